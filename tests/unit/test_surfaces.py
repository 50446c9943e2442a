"""The surface translator alone (surfaces/): Anthropic Messages and OpenAI Responses requests to
Chat Completions, chat replies and chunks back, errors, the response store. Pure: no server.
Responses objects and events are checked against OpenAI's published schemas (tests/openai_schema)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from surfaces import anthropic, responses
from surfaces.anthropic_stream import MessagesStream
from surfaces.errors import SurfaceError
from surfaces.response_store import ResponseStore
from surfaces.responses_stream import ResponsesStream
from surfaces.sse import Reader, frame
from tests import anthropic_types
from tests.openai_schema import event_problems, problems

TOOL = {"name": "get_weather", "description": "Weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}  # fmt: skip
CALL_CHUNKS = [
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
    {"choices": [{"index": 0, "delta": {"content": "Let me look."}, "finish_reason": None}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                        "function": {"name": "get_weather", "arguments": '{"city": '}}]}}]},
    {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}}]},
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
    {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}},
]  # fmt: skip


def messages_body(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 32, "messages": [{"role": "user", "content": "Weather in Paris?"}], **extra}


def refusal(parse: Any, body: dict[str, Any]) -> SurfaceError:
    with pytest.raises(SurfaceError) as caught:
        parse(body)
    assert caught.value.status == 400
    return caught.value


# ----------------------------------------------------------------------------- Anthropic: requests


def test_a_messages_request_becomes_the_chat_request_that_means_the_same() -> None:
    body = messages_body(
        system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use tools.", "cache_control": {"type": "ephemeral"}}],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                                              {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "Sunny"}]},
                                         {"type": "tool_result", "tool_use_id": "toolu_2", "content": "timeout", "is_error": True},
                                         {"type": "text", "text": "And so?"}]},
        ],
        tools=[TOOL], tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        temperature=0.5, top_p=0.9, top_k=40, stop_sequences=["END"], metadata={"user_id": "u-1"}, stream=True)  # fmt: skip
    assert anthropic.chat_request(anthropic.parse(body)).wire() == {
        "model": "m", "max_tokens": 32, "temperature": 0.5, "top_p": 0.9, "top_k": 40, "stop": ["END"],
        "stream": True, "stream_options": {"include_usage": True}, "user": "u-1", "parallel_tool_calls": False,
        "messages": [
            {"role": "system", "content": "Be brief.\nUse tools."},
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: timeout"},
            {"role": "user", "content": "And so?"},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                                    "parameters": TOOL["input_schema"]}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }  # fmt: skip


@pytest.mark.parametrize(("choice", "chat"), [("auto", "auto"), ("any", "required"), ("none", "none")])
def test_tool_choice_kinds(choice: str, chat: str) -> None:
    req = anthropic.parse(messages_body(tools=[TOOL], tool_choice={"type": choice}))
    assert anthropic.chat_request(req).wire()["tool_choice"] == chat


@pytest.mark.parametrize(("body", "says"), [
    ({"max_tokens": None}, "max_tokens is required"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
     "messages[0].content[0].type: 'image' blocks are not served"),
    ({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]}, "'document' blocks"),
    ({"messages": [{"role": "assistant", "content": [{"type": "thinking", "thinking": "", "signature": ""}]}]},
     "'thinking' blocks are not served"),
    ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking: extended thinking ('enabled') is not served"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type: server tools"),
    ({"container": "c"}, "unsupported field 'container' for /v1/messages"),
    ({"temperature": 1.5}, "temperature must be <= 1.0"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "x", "name": "f", "input": {}}]}]},
     "messages[0].content[0].type: a user turn cannot hold tool_use blocks"),
    ({"tool_choice": {"type": "tool"}}, "tool_choice.name is required"),
])  # fmt: skip
def test_what_is_not_served_is_a_400_naming_it(body: dict[str, Any], says: str) -> None:
    full = {k: v for k, v in {**messages_body(), **body}.items() if v is not None}
    assert says in refusal(anthropic.parse, full).message


def test_count_tokens_asks_for_one_token_of_the_same_conversation() -> None:
    req = anthropic.parse_count({"model": "m", "system": "S", "messages": [{"role": "user", "content": "Hi"}], "tools": [TOOL]})
    wire = anthropic.count_request(req).wire()
    assert wire["max_tokens"] == 1 and wire["messages"][0] == {"role": "system", "content": "S"} and wire["tools"]
    assert anthropic.count({"choices": [], "usage": {"prompt_tokens": 41, "completion_tokens": 1}}) == {"input_tokens": 41}
    assert "max_tokens" in refusal(anthropic.parse_count, {"model": "m", "max_tokens": 3, "messages": [{"role": "user", "content": "x"}]}).message


# ----------------------------------------------------------------------------- Anthropic: replies


def test_a_chat_reply_becomes_a_message() -> None:
    req = anthropic.parse(messages_body(stop_sequences=["END"]))
    reply = {"id": "chatcmpl-7", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Sunny",
             "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
             "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 10, "completion_tokens": 4,
             "prompt_tokens_details": {"cached_tokens": 6}}}  # fmt: skip
    assert anthropic_types.problems("message", anthropic.message(reply, req=req)) == []
    assert anthropic.message(reply, req=req) == {
        "id": "msg_7", "type": "message", "role": "assistant", "model": "m",
        "content": [{"type": "text", "text": "Sunny"},
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 4, "cache_read_input_tokens": 6, "output_tokens": 4},
    }  # fmt: skip


@pytest.mark.parametrize(("finish", "stop", "reason", "sequence"), [
    ("stop", None, "end_turn", None), ("length", None, "max_tokens", None), ("stop", "END", "stop_sequence", "END"),
    ("stop", "OTHER", "end_turn", None), ("tool_calls", None, "tool_use", None),
])  # fmt: skip
def test_stop_reasons(finish: str, stop: str | None, reason: str, sequence: str | None) -> None:
    assert anthropic.stop_reason(finish, stop, ["END"]) == (reason, sequence)


def test_a_whole_call_is_tool_use_even_at_length_and_a_cut_one_is_left_out() -> None:
    req = anthropic.parse(messages_body())
    call = {"id": "c", "function": {"name": "f", "arguments": '{"city": "Paris"}'}}
    whole = {"choices": [{"message": {"content": "", "tool_calls": [call]}, "finish_reason": "length"}]}
    assert anthropic.message(whole, req=req)["stop_reason"] == "tool_use"
    cut = {"choices": [{"message": {"content": "x", "tool_calls": [{**call, "function": {"name": "f", "arguments": '{"ci'}}]},
                        "finish_reason": "length"}]}  # fmt: skip
    body = anthropic.message(cut, req=req)
    assert body["stop_reason"] == "max_tokens" and [b["type"] for b in body["content"]] == ["text"]


def test_arguments_that_are_not_an_object_are_a_502_not_a_wrong_block() -> None:
    reply = {"choices": [{"message": {"tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "Paris"}}]},
                          "finish_reason": "tool_calls"}]}  # fmt: skip
    with pytest.raises(SurfaceError) as caught:
        anthropic.message(reply, req=anthropic.parse(messages_body()))
    assert caught.value.status == 502


def test_errors_in_anthropic_shape() -> None:
    assert anthropic.error_body(400, "bad") == {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}
    assert anthropic.error_body(404, "x")["error"]["type"] == "not_found_error"
    assert anthropic.error_body(401, "x")["error"]["type"] == "authentication_error"
    assert anthropic.error_body(503, "x")["error"]["type"] == "overloaded_error"
    for status in (400, 401, 403, 404, 405, 408, 413, 429, 500, 502, 503, 529):
        assert anthropic_types.problems("error", anthropic.error_body(status, "x")) == [], status
    openai_shaped = {"error": {"message": "The model `x` does not exist.", "type": "NotFoundError", "param": "model"}}
    assert anthropic.error_from_chat(404, openai_shaped) == {
        "type": "error", "error": {"type": "not_found_error", "message": "The model `x` does not exist."}}


def test_the_stream_events_come_in_the_order_the_sdk_assembles() -> None:
    stream = MessagesStream(anthropic.parse(messages_body(stream=True)), chat_id="chatcmpl-9")
    events = stream.start()
    for chunk in CALL_CHUNKS:
        events += stream.feed(chunk)
    events += stream.finish()
    assert [p for _, data in events for p in anthropic_types.problems("event", data)] == []
    assert [name for name, _ in events] == [
        "message_start", "ping", "content_block_start", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop"]  # fmt: skip
    by = [data for _, data in events]
    assert by[2]["content_block"] == {"type": "text", "text": ""} and by[3]["delta"] == {"type": "text_delta", "text": "Let me look."}
    assert by[5] == {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "call_1",
                                                                                 "name": "get_weather", "input": {}}}  # fmt: skip
    assert "".join(d["delta"]["partial_json"] for d in by[6:8]) == '{"city": "Paris"}'
    assert by[9] == {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                     "usage": {"output_tokens": 7, "input_tokens": 12, "cache_read_input_tokens": 0}}  # fmt: skip


def test_a_stream_that_says_nothing_still_has_its_text_block_and_counts_known_up_front() -> None:
    stream = MessagesStream(anthropic.parse(messages_body(stream=True)), input_tokens=5)
    events = stream.start() + stream.feed({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
    events += stream.finish()
    assert events[0][1]["message"]["usage"] == {"input_tokens": 5, "output_tokens": 0}
    assert [n for n, _ in events][2:] == ["content_block_start", "content_block_stop", "message_delta", "message_stop"]
    assert events[-2][1]["delta"]["stop_reason"] == "max_tokens" and "input_tokens" not in events[-2][1]["usage"]


# ----------------------------------------------------------------------------- Responses


def test_a_responses_request_becomes_the_chat_request_that_means_the_same() -> None:
    body = {"model": "m", "instructions": "Be brief.", "max_output_tokens": 40, "temperature": 0, "top_p": 0.5,
            "input": [{"role": "developer", "content": "Answer in French."},
                      {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
                      {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
                      {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": '{"city":"Rome"}'},
                      {"type": "function_call_output", "call_id": "c1", "output": "Sunny"}],
            "tools": [{"type": "function", "name": "get_weather", "parameters": TOOL["input_schema"], "strict": True},
                      {"type": "function", "name": "get_time", "parameters": {"type": "object"}}],
            "tool_choice": {"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "get_weather"}]},
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": True}},
            "user": "u", "store": False, "metadata": {"k": "v"}, "reasoning": {"effort": None}, "include": []}  # fmt: skip
    wire = responses.chat_request(responses.parse(body)).wire()
    assert wire == {
        "model": "m", "max_tokens": 40, "temperature": 0.0, "top_p": 0.5, "user": "u",
        "messages": [
            {"role": "system", "content": "Be brief."}, {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
                {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "Sunny"},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": TOOL["input_schema"], "strict": True}}],
        "tool_choice": "required",
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": True}},
    }  # fmt: skip


@pytest.mark.parametrize(("body", "says"), [
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
     "input[0].content[0].type: 'input_image' parts are not served"),
    ({"input": [{"type": "reasoning", "summary": []}]}, "input[0].type: 'reasoning' items are not served"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type: 'web_search' tools are not served"),
    ({"tools": [{"type": "file_search", "vector_store_ids": []}]}, "'file_search' tools are not served"),
    ({"reasoning": {"effort": "high"}}, "reasoning: reasoning settings are not served"),
    ({"background": True}, "background: background runs are not served"),
    ({"conversation": "conv_1"}, "unsupported field 'conversation' for /v1/responses"),
    ({"max_output_tokens": 0}, "max_output_tokens must be >= 1"),
])  # fmt: skip
def test_what_responses_does_not_serve_is_a_400_naming_it(body: dict[str, Any], says: str) -> None:
    assert says in refusal(responses.parse, {"model": "m", "input": "hi", **body}).message


def test_a_chat_reply_becomes_a_response_that_validates() -> None:
    req = responses.parse({"model": "m", "input": "hi", "tools": [{"type": "function", "name": "f", "parameters": {}}]})
    reply = {"choices": [{"message": {"content": "Hello", "tool_calls": [
        {"id": "call_9", "function": {"name": "f", "arguments": "{}"}}]}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2}}  # fmt: skip
    body = responses.response(reply, req=req, rid="resp_1", created_at=1)
    assert problems("response", body) == []
    # A whole call is a complete reply, even where the engine says "length" (vLLM's grammar pads calls).
    assert body["status"] == "completed" and body["incomplete_details"] is None
    assert [i["type"] for i in body["output"]] == ["message", "function_call"]
    assert body["output"][0]["content"][0]["text"] == "Hello" and body["output"][1]["call_id"] == "call_9"
    assert body["usage"]["total_tokens"] == 5
    cut = {"choices": [{"message": {"content": "Hel", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": '{"ci'}}]},
                        "finish_reason": "length"}]}  # fmt: skip
    short = responses.response(cut, req=req, rid="resp_3", created_at=1)
    assert short["status"] == "incomplete" and short["incomplete_details"] == {"reason": "max_output_tokens"}
    assert [i["type"] for i in short["output"]] == ["message"] and problems("response", short) == []
    assert problems("error", responses.error_body(400, "bad", param="input")) == []


def test_the_responses_stream_events_come_in_order_and_validate() -> None:
    req = responses.parse({"model": "m", "input": "hi", "stream": True})
    stream = ResponsesStream(req, rid="resp_2")
    events = stream.start()
    for chunk in CALL_CHUNKS:
        events += stream.feed(chunk)
    events += stream.finish()
    assert [name for name, _ in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done", "response.output_item.done",
        "response.completed"]  # fmt: skip
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    for _, data in events + stream.error(500, "engine died"):
        assert event_problems(data) == [], data
    final = events[-1][1]["response"]
    assert final["output"][1]["arguments"] == '{"city": "Paris"}' and final["usage"]["input_tokens"] == 12


def test_the_store_keeps_conversations_for_their_ttl_and_at_most_its_capacity() -> None:
    now = [0.0]
    store = ResponseStore(capacity=2, ttl=60, clock=lambda: now[0])
    req = responses.parse({"model": "m", "input": "hi", "instructions": "never stored"})
    turn = responses.conversation(req) + responses.as_history([responses.message_item("Hello")])
    store.put("a", turn)
    assert [m.content for m in store.get("a") or ()] == ["hi", "Hello"]
    store.put("b", turn)
    store.put("c", turn)  # over capacity: the oldest goes
    assert store.get("a") is None and store.get("b") is not None
    now[0] = 61
    assert store.get("b") is None and len(store) == 0
    follow = responses.parse({"model": "m", "input": "and then?", "previous_response_id": "c"})
    assert [m.content for m in responses.conversation(follow, turn)] == ["hi", "Hello", "and then?"]
    assert "in memory for 1 minutes" in responses.unknown_previous("x", kept=store.describe()).message


def test_sse_reader_reassembles_events_split_anywhere() -> None:
    stream = (frame({"a": 1}, event="message_start") + frame({"b": "é"}) + "data: [DONE]\n\n").encode()
    for cut in range(len(stream)):
        reader = Reader()
        events = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
        assert [(e.event, e.data) for e in events] == [("message_start", '{"a":1}'), (None, '{"b":"é"}'), (None, "[DONE]")]
    assert json.loads(Reader().feed(b'data: {"x":\r\ndata: 2}\r\n\r\n')[0].data) == {"x": 2}
