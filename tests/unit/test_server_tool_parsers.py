"""Each family's tool-call parser on well-formed, partial (streamed), malformed and multi-call
replies, as golden files: what a reply turns into must never change unnoticed, and a reply that
does not parse must come back as content, never as an exception."""

from __future__ import annotations

import json

import pytest

from backends.builtin_server.tools.parsers import PARSERS
from backends.builtin_server.tools.spec import Function, ToolRequest
from backends.builtin_server.tools.stream import CallDelta, ContentDelta, ToolStream
from tests.golden import assert_golden

TOOLS = ToolRequest((Function("get_weather", "Weather for a city", {"type": "object", "properties": {"city": {"type": "string"}}}),
                     Function("add", None, {"type": "object", "properties": {"a": {"type": "integer"}}})))  # fmt: skip

REPLIES: dict[str, dict[str, str]] = {
    "hermes": {
        "one call": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
        "text then two calls": 'Let me check.\n<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}'
                               '</tool_call>\n<tool_call>{"name": "add", "arguments": "{\\"a\\": 2}"}</tool_call>',
        "unclosed at the end": '<tool_call>{"name": "add", "arguments": {"a": 1}}',
        "malformed json": '<tool_call>{"name": "add", "arguments": {"a": 1</tool_call> and more',
        "unknown function": '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>',
        "arguments not an object": '<tool_call>{"name": "add", "arguments": [1, 2]}</tool_call>',
        "no call": "Paris is sunny.",
    },
    "llama3_json": {
        "one call": '{"name": "get_weather", "parameters": {"city": "Paris"}}',
        "python tag and two calls": '<|python_tag|>{"name": "add", "parameters": {"a": 1}}; {"name": "add", "parameters": {"a": 2}}',
        "text": "I cannot help with that.",
        "malformed": '{"name": "add", "parameters": {"a": ',
        "one good one unknown": '{"name": "add", "parameters": {"a": 1}}; {"name": "nope", "parameters": {}}',
    },
    "mistral": {
        "array": '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "add", "arguments": {"a": 3}}]',
        "named args": "[TOOL_CALLS]add[ARGS]{\"a\": 4}[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Oslo\"}",
        "text before": 'Sure. [TOOL_CALLS][{"name": "add", "arguments": {"a": 5}}]',
        "malformed": "[TOOL_CALLS][{\"name\": \"add\", \"argum",
        "no call": "Just text.",
    },
    "generic": {
        "one call": '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}',
        "repeated call": '{"tool_calls": [{"name": "add", "arguments": {"a": 1}}, {"name": "add", "arguments": {"a": 1}}]}',
        "llama.cpp's single form": '{"tool_call": {"name": "add", "arguments": {"a": 7}}}',
        "response": '{"response": "It is sunny in Paris."}',
        "truncated": '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Par',
        "not json": "Sunny.",
        "unknown function": '{"tool_calls": [{"name": "nope", "arguments": {}}]}',
    },
}


def render(parser: str) -> str:
    out = {}
    for label, reply in REPLIES[parser].items():
        parsed = PARSERS[parser].extract(reply, TOOLS)
        out[label] = {"content": parsed.content, "calls": [f"{c.name} {c.arguments}" for c in parsed.calls]}
    return json.dumps(out, indent=2, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("parser", sorted(REPLIES))
def test_parser_golden(parser: str) -> None:
    assert_golden(f"tools/{parser}.json", render(parser))


def streamed(parser: str, reply: str) -> tuple[str, list[str]]:
    """Feed ``reply`` a character at a time, as a stream grows; the content and calls sent."""
    stream = ToolStream(PARSERS[parser], TOOLS)
    events = [e for i in range(1, len(reply) + 1) for e in stream.feed(reply[:i])]
    events += stream.finish(reply)[0]
    content = "".join(e.text for e in events if isinstance(e, ContentDelta))
    return content, [e.call.name for e in events if isinstance(e, CallDelta)]


@pytest.mark.parametrize("parser", sorted(REPLIES))
def test_a_stream_sends_what_the_whole_reply_says(parser: str) -> None:
    for label, reply in REPLIES[parser].items():
        parsed = PARSERS[parser].extract(reply, TOOLS)
        content, calls = streamed(parser, reply)
        assert calls == [c.name for c in parsed.calls], label
        if not parsed.calls:
            # Everything the reply says reaches the client (raw text, or the decoded response).
            assert content.strip() == (parsed.content or ""), label


def test_a_stream_sends_text_before_a_call_at_once_and_holds_back_a_marker() -> None:
    stream = ToolStream(PARSERS["hermes"], TOOLS)
    assert stream.feed("Let me check. <tool_") == [ContentDelta("Let me check. ")]
    assert stream.feed('Let me check. <tool_call>{"name"') == []


def test_generic_response_text_is_streamed_as_it_is_decoded() -> None:
    stream = ToolStream(PARSERS["generic"], TOOLS)
    assert stream.feed('{"response": "Caf') == [ContentDelta("Caf")]
    assert stream.feed('{"response": "Caf\\u00e') == []  # half an escape waits
    assert stream.feed('{"response": "Caf\\u00e9 \\"ok') == [ContentDelta('é "ok')]
    events, parsed = stream.finish('{"response": "Caf\\u00e9 \\"ok\\""}')
    assert events == [ContentDelta('"')] and parsed.content == 'Café "ok"'
