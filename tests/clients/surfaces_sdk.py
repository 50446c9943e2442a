"""Runs inside the sdk-surfaces venv (tests/envs.py): the real `anthropic` and `openai` SDKs
against one deployment's Anthropic Messages and OpenAI Responses, printing one JSON line per check
(the test asserts on them; this script only reports, so a failure shows everything that came).

    python surfaces_sdk.py BASE_URL MODEL [API_KEY]     # BASE_URL without /v1

Anthropic answers are also parsed in strict mode with the SDK's own types (``strict``: the
problems found, with any field the types do not know); Responses bodies and events are printed
raw so the test validates them against OpenAI's published schemas.
"""

import json
import sys
import traceback

import anthropic
import openai
from anthropic.types import Message, MessageTokensCount, RawMessageStreamEvent
from pydantic import BaseModel, TypeAdapter, ValidationError

base, model = sys.argv[1].rstrip("/"), sys.argv[2]
key = sys.argv[3] if len(sys.argv) > 3 else "EMPTY"
ant = anthropic.Anthropic(base_url=base, api_key=key, max_retries=0, timeout=300)
oai = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=300)
GREEDY = {"temperature": 0}  # the anthropic SDK 2.17 has no temperature parameter: extra_body carries it
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOL = {"name": "get_weather", "description": "Get the current weather in a city.", "input_schema": WEATHER}
FUNCTION = {"type": "function", "name": "get_weather", "description": "Get the current weather in a city.",
            "parameters": WEATHER}  # fmt: skip
CITY = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"], "additionalProperties": False}  # fmt: skip
ASK = [{"role": "user", "content": "What is the weather like in Paris today?"}]


def report(check: str, **fields) -> None:
    print(json.dumps({"check": check, **fields}, default=str), flush=True)


def extras(value, path="") -> list[str]:
    """Fields the SDK's types do not declare (its models allow extras; strict means none)."""
    found = []
    if isinstance(value, BaseModel):
        found += [f"{path}.{k}" for k in (value.model_extra or {})]
        for name in type(value).model_fields:
            found += extras(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += extras(item, f"{path}[{i}]")
    return found


def strict(kind, raw) -> list[str]:
    try:
        parsed = TypeAdapter(kind).validate_python(raw, strict=True)
    except ValidationError as exc:
        return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    return extras(parsed)


def error_of(exc: Exception) -> dict:
    body = getattr(exc, "body", None)
    return {"status": getattr(exc, "status_code", None), "type": type(exc).__name__, "body": body}


# ----------------------------------------------------------------------------- Anthropic Messages


def messages_plain() -> None:
    raw = ant.messages.with_raw_response.create(model=model, max_tokens=8, messages=ASK, extra_body=GREEDY)
    msg = raw.parse()
    body = json.loads(raw.http_response.text)
    report("messages.plain", text=msg.content[0].text if msg.content else None, stop_reason=msg.stop_reason,
           usage=body["usage"], strict=strict(Message, body), body=body)  # fmt: skip


def raw_events(create) -> list[dict]:
    events = []
    with create() as response:
        name = None
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                events.append({"event": name, "data": json.loads(line[5:])})
    return events


def messages_stream() -> None:
    """The raw events (parsed strictly, in order; their text joined): the SDK's own assembly of a
    stream is exercised by the streamed tool call below."""
    events = raw_events(lambda: ant.messages.with_streaming_response.create(
        model=model, max_tokens=8, messages=ASK, stream=True, extra_body=GREEDY))  # fmt: skip
    # ping is no RawMessageStreamEvent: the SDK reads it and moves on.
    problems = [p for e in events if e["data"]["type"] != "ping" for p in strict(RawMessageStreamEvent, e["data"])]
    problems += [f"ping event {e['data']}" for e in events if e["data"]["type"] == "ping" and e["data"] != {"type": "ping"}]
    problems += [f"event line {e['event']!r} != data type {e['data']['type']!r}" for e in events
                 if e["event"] != e["data"]["type"]]  # fmt: skip
    text = "".join(e["data"]["delta"].get("text", "") for e in events if e["data"]["type"] == "content_block_delta")
    delta = next((e["data"] for e in events if e["data"]["type"] == "message_delta"), {})
    report("messages.stream", text=text, stop_reason=delta.get("delta", {}).get("stop_reason"),
           usage=delta.get("usage"), order=[e["data"]["type"] for e in events], strict=problems)  # fmt: skip


def messages_tools() -> None:
    """A forced call (or its refusal, where the engine has no tool calling), then a tool_result turn:
    after the call that came, else after a call written here (an agent's history)."""
    forced = {"type": "tool", "name": "get_weather"}
    use = {"type": "tool_use", "id": "toolu_history1", "name": "get_weather", "input": {"city": "Paris"}}
    try:
        raw = ant.messages.with_raw_response.create(model=model, max_tokens=48, messages=ASK, tools=[TOOL],
                                                    tool_choice=forced, extra_body=GREEDY)  # fmt: skip
        msg, body = raw.parse(), json.loads(raw.http_response.text)
        called = next((b for b in msg.content if b.type == "tool_use"), None)
        report("messages.tool_use", stop_reason=msg.stop_reason, tool_use=called.model_dump() if called else None,
               strict=strict(Message, body), body=body)  # fmt: skip
        use = called.model_dump(exclude_none=True) if called else use
    except anthropic.APIStatusError as exc:
        report("messages.tool_use", error=error_of(exc))
    turn = [*ASK, {"role": "assistant", "content": [use]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use["id"],
                                          "content": "Sunny and 21 C in Paris."}]}]  # fmt: skip
    # The answer, not another call: tool_choice none (the tools stay, as an agent's loop sends them).
    after = ant.messages.create(model=model, max_tokens=16, messages=turn, tools=[TOOL], tool_choice={"type": "none"},
                                extra_body=GREEDY)  # fmt: skip
    report("messages.tool_result", stop_reason=after.stop_reason, content=[b.model_dump() for b in after.content])
    try:
        with ant.messages.stream(model=model, max_tokens=48, messages=ASK, tools=[TOOL], tool_choice=forced,
                                 extra_body=GREEDY) as stream:  # fmt: skip
            kinds = [e.type if e.type != "content_block_delta" else e.delta.type for e in stream]
            final = stream.get_final_message()
        streamed = next((b for b in final.content if b.type == "tool_use"), None)
        report("messages.tool_stream", order=kinds, stop_reason=final.stop_reason,
               tool_use=streamed.model_dump() if streamed else None)  # fmt: skip
    except anthropic.APIStatusError as exc:
        report("messages.tool_stream", error=error_of(exc))


def messages_errors() -> None:
    try:
        ant.messages.create(model="no-such-model", max_tokens=4, messages=ASK)
        report("messages.error.model", error=None)
    except anthropic.APIStatusError as exc:
        report("messages.error.model", error=error_of(exc))
    try:
        ant.messages.create(model=model, max_tokens=0, messages=ASK)
        report("messages.error.invalid", error=None)
    except anthropic.APIStatusError as exc:
        report("messages.error.invalid", error=error_of(exc))
    count = ant.messages.with_raw_response.count_tokens(model=model, messages=ASK)
    report("messages.count_tokens", input_tokens=count.parse().input_tokens,
           strict=strict(MessageTokensCount, json.loads(count.http_response.text)))  # fmt: skip


# ----------------------------------------------------------------------------- OpenAI Responses


def responses_plain() -> None:
    raw = oai.responses.with_raw_response.create(model=model, input="What is the capital of France?",
                                                 max_output_tokens=8, temperature=0)  # fmt: skip
    resp = raw.parse()
    report("responses.plain", text=resp.output_text, status=resp.status, body=json.loads(raw.http_response.text))
    try:
        follow = oai.responses.create(model=model, input="And of Italy?", previous_response_id=resp.id,
                                      max_output_tokens=8, temperature=0)  # fmt: skip
        report("responses.previous", text=follow.output_text, error=None)
    except openai.APIStatusError as exc:
        report("responses.previous", text=None, error=error_of(exc))


def responses_stream() -> None:
    """The SDK's typed events; each as it came (to_dict: the fields the server sent) is printed for
    the test to validate against OpenAI's schema."""
    stream = oai.responses.create(model=model, input="What is the capital of France?", max_output_tokens=8,
                                  temperature=0, stream=True)  # fmt: skip
    events = [event.to_dict() for event in stream]
    final = next((e["response"] for e in events if e["type"] in ("response.completed", "response.incomplete")), None)
    final_text = "".join(p["text"] for item in (final or {}).get("output", []) if item["type"] == "message"
                         for p in item["content"])  # fmt: skip
    report("responses.stream", order=[e["type"] for e in events], events=events, final_text=final_text,
           text="".join(e["delta"] for e in events if e["type"] == "response.output_text.delta"))


def responses_tools() -> None:
    call = {"type": "function_call", "call_id": "call_history1", "name": "get_weather", "arguments": '{"city": "Paris"}'}
    try:
        raw = oai.responses.with_raw_response.create(model=model, input=ASK, tools=[FUNCTION], max_output_tokens=48,
                                                     tool_choice={"type": "function", "name": "get_weather"},
                                                     temperature=0)  # fmt: skip
        resp = raw.parse()
        called = next((item for item in resp.output if item.type == "function_call"), None)
        report("responses.function_call", call=called.model_dump() if called else None, body=json.loads(raw.http_response.text))
        call = called.model_dump(exclude_none=True) if called else call
    except openai.APIStatusError as exc:
        report("responses.function_call", error=error_of(exc))
    turn = [*ASK, call, {"type": "function_call_output", "call_id": call["call_id"], "output": "Sunny and 21 C in Paris."}]
    after = oai.responses.create(model=model, input=turn, tools=[FUNCTION], tool_choice="none", max_output_tokens=16,
                                 temperature=0)  # fmt: skip
    report("responses.function_call_output", text=after.output_text, status=after.status,
           types=[item.type for item in after.output])  # fmt: skip
    try:
        stream = oai.responses.create(model=model, input=ASK, tools=[FUNCTION], max_output_tokens=48, temperature=0,
                                      tool_choice="required", stream=True)  # fmt: skip
        kinds, final = [], None
        for event in stream:
            kinds.append(event.type)
            if event.type == "response.completed":
                final = event.response
        calls = [item.model_dump() for item in final.output if item.type == "function_call"] if final else []
        report("responses.function_call_stream", order=kinds, calls=calls)
    except openai.APIStatusError as exc:
        report("responses.function_call_stream", error=error_of(exc))


def responses_json_schema() -> None:
    fmt = {"type": "json_schema", "name": "city", "schema": CITY, "strict": True}
    try:
        raw = oai.responses.with_raw_response.create(model=model, input="Name the capital of France and its country, "
                                                     "as JSON.", text={"format": fmt}, max_output_tokens=48,
                                                     temperature=0)  # fmt: skip
        resp = raw.parse()
        report("responses.json_schema", text=resp.output_text, status=resp.status,
               body=json.loads(raw.http_response.text))  # fmt: skip
    except openai.APIStatusError as exc:
        report("responses.json_schema", error=error_of(exc))


def responses_errors() -> None:
    try:
        oai.responses.create(model="no-such-model", input="hi", max_output_tokens=4)
        report("responses.error.model", error=None)
    except openai.APIStatusError as exc:
        report("responses.error.model", error=error_of(exc))
    try:
        oai.responses.create(model=model, input=[{"role": "robot", "content": "hi"}], max_output_tokens=4)
        report("responses.error.invalid", error=None)
    except openai.APIStatusError as exc:
        report("responses.error.invalid", error=error_of(exc))


CHECKS = [messages_plain, messages_stream, messages_tools, messages_errors, responses_plain, responses_stream,
          responses_tools, responses_json_schema, responses_errors]  # fmt: skip
only = sys.argv[4].split(",") if len(sys.argv) > 4 else None
for check in CHECKS:
    if only and check.__name__ not in only:
        continue
    try:
        check()
    except Exception as exc:  # reported, and the other checks still run
        report(f"{check.__name__}.crashed", error=f"{type(exc).__name__}: {exc}", trace=traceback.format_exc()[-1500:])
