"""What the real SDKs must have seen on a deployment's Anthropic Messages and OpenAI Responses
(the JSON lines of tests/clients/surfaces_sdk.py and agentscope_v1_surfaces.py): one checker for
every engine, told what that engine cannot do (FastChat: no tool calling, no structured output,
no usage in streams), so a refusal there must name the field instead."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import jsonschema

from tests.e2e.conftest import client_lines
from tests.openai_schema import event_problems, problems

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
CITY = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"]}  # fmt: skip
ERROR_TYPES = {"invalid_request_error", "not_found_error", "authentication_error"}
# Anthropic's stream, as the SDK assembles it: ping may come anywhere.
MESSAGES_ORDER = re.compile(r"^message_start( ping)*( content_block_start( ping)*( content_block_delta( ping)*)* "
                            r"content_block_stop( ping)*)+ message_delta( ping)* message_stop$")  # fmt: skip
RESPONSES_ORDER = re.compile(
    r"^response\.created response\.in_progress( response\.output_item\.added"
    r"( response\.content_part\.added( response\.output_text\.delta)* response\.output_text\.done"
    r" response\.content_part\.done| (response\.function_call_arguments\.delta )*response\.function_call_arguments\.done)"
    r" response\.output_item\.done)+ response\.(completed|incomplete)$"
)


@dataclass(frozen=True)
class Engine:
    tools: bool = True  # forced calls come back as calls (else: a 400 naming tool_choice)
    structured: bool = True  # text.format json_schema is held (else: a 400 naming text.format)
    missing_model: tuple[int, ...] = (404,)  # the status a wrong model gets


def by_check(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    crashed = [line for line in lines if line["check"].endswith("crashed")]
    assert not crashed, json.dumps(crashed, indent=1)[:4000]
    return {line["check"]: line for line in lines}


def refused(line: dict[str, Any], field: str) -> None:
    error = line.get("error")
    assert error and error["status"] == 400, line
    body = error["body"]  # Anthropic's whole body; the openai SDK hands over the inner error object
    message = body["error"]["message"] if "error" in body else body["message"]
    assert message.startswith(field), line


def check_messages(got: dict[str, dict[str, Any]], engine: Engine) -> None:
    plain = got["messages.plain"]
    assert plain["strict"] == [] and plain["text"] and plain["stop_reason"] in ("end_turn", "max_tokens"), plain
    assert plain["usage"]["input_tokens"] > 0 and plain["usage"]["output_tokens"] > 0, plain
    stream = got["messages.stream"]
    assert stream["strict"] == [] and MESSAGES_ORDER.match(" ".join(stream["order"])), stream
    assert stream["text"] and stream["stop_reason"] in ("end_turn", "max_tokens") and stream["usage"]["output_tokens"], stream
    result = got["messages.tool_result"]  # after the call that came (or, refused, one an agent had made)
    assert result["content"][0]["type"] == "text" and result["content"][0]["text"], result
    if engine.tools:
        for name in ("messages.tool_use", "messages.tool_stream"):
            call = got[name]
            assert call["stop_reason"] == "tool_use" and call["tool_use"]["name"] == "get_weather", call
            jsonschema.validate(call["tool_use"]["input"], WEATHER)
        assert got["messages.tool_use"]["strict"] == [], got["messages.tool_use"]
        assert "input_json_delta" in got["messages.tool_stream"]["order"], got["messages.tool_stream"]
    else:
        refused(got["messages.tool_use"], "tool_choice")
        refused(got["messages.tool_stream"], "tool_choice")
    for name, status in (("messages.error.model", engine.missing_model), ("messages.error.invalid", (400,))):
        error = got[name]["error"]
        assert error["status"] in status and error["body"]["type"] == "error", got[name]
        assert error["body"]["error"]["type"] in ERROR_TYPES and error["body"]["error"]["message"], got[name]
    assert "max_tokens" in got["messages.error.invalid"]["error"]["body"]["error"]["message"]
    count = got["messages.count_tokens"]
    assert count["strict"] == [] and count["input_tokens"] > 0, count


def check_responses(got: dict[str, dict[str, Any]], engine: Engine) -> None:
    plain = got["responses.plain"]
    assert plain["text"] and problems("response", plain["body"]) == [], plain
    assert got["responses.previous"]["error"] is None and got["responses.previous"]["text"], got["responses.previous"]
    stream = got["responses.stream"]
    assert RESPONSES_ORDER.match(" ".join(stream["order"])), stream["order"]
    assert [p for e in stream["events"] for p in event_problems(e)] == []
    assert [e["sequence_number"] for e in stream["events"]] == list(range(len(stream["events"])))
    assert stream["text"] == stream["final_text"] and stream["text"], stream
    output = got["responses.function_call_output"]
    assert output["text"] and output["types"] == ["message"], output
    if engine.tools:
        call = got["responses.function_call"]
        assert call["call"]["name"] == "get_weather" and problems("response", call["body"]) == [], call
        jsonschema.validate(json.loads(call["call"]["arguments"]), WEATHER)
        streamed = got["responses.function_call_stream"]
        assert RESPONSES_ORDER.match(" ".join(streamed["order"])) and streamed["calls"], streamed
        jsonschema.validate(json.loads(streamed["calls"][0]["arguments"]), WEATHER)
    else:
        refused(got["responses.function_call"], "tool_choice")
        refused(got["responses.function_call_stream"], "tool_choice")
    shaped = got["responses.json_schema"]
    if engine.structured:
        assert problems("response", shaped["body"]) == [], shaped
        jsonschema.validate(json.loads(shaped["text"]), CITY)
    else:
        refused(shaped, "text.format")
    for name, status in (("responses.error.model", engine.missing_model), ("responses.error.invalid", (400,))):
        error = got[name]["error"]
        assert error["status"] in status and error["body"]["message"] and "type" in error["body"], got[name]
    assert got["responses.error.invalid"]["error"]["body"]["param"] == "input[0].role"


def sdk_checks(python: str, base: str, model: str, engine: Engine, key: str = "EMPTY") -> None:
    """The anthropic and openai SDKs (the sdk-surfaces venv) against ``base``: every check passes."""
    got = by_check(client_lines(python, "surfaces_sdk.py", base, model, key, timeout=1800))
    check_messages(got, engine)
    check_responses(got, engine)


def agentscope_checks(python: str, base: str, model: str) -> None:
    """AgentScope 1.x's AnthropicChatModel and OpenAIResponseModel (streamed, its default) each
    drive a ReActAgent that calls get_weather in its run and gets the tool's answer back."""
    lines = client_lines(python, "agentscope_v1_surfaces.py", base, model, timeout=1800)
    assert not [line for line in lines if line["check"] == "crashed"], lines
    for surface in ("anthropic", "responses"):
        react = next(line for line in lines if line["check"] == "react" and line["surface"] == surface)
        assert react["called"] and react["called"][0] == "Paris", react  # the agent's loop called get_weather
        assert react["results"] and react["results"][0].startswith("It is sunny"), react
        assert isinstance(react["text"], str) and react["text"], react  # and the run ended with an answer
