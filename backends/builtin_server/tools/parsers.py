"""Reading tool calls out of what a model wrote: one small parser per model family.

Each parser knows where a call can begin (so a stream can send the text before it at once) and
how to turn a finished reply into content and calls. Nothing here raises for what a model writes:
a call that does not parse, names a function the request did not offer, or carries arguments that
are not a JSON object stays in the content, as text.

- ``hermes``: Hermes 2/3 and Qwen 2.5/3: ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``.
- ``llama3_json``: Llama 3.1-3.3: the whole reply is ``{"name": ..., "parameters": {...}}`` (after
  an optional ``<|python_tag|>``), several separated by ``;``.
- ``mistral``: ``[TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]``, or the newer
  ``[TOOL_CALLS]name[ARGS]{...}``.
- ``generic``: the JSON modelserve asks of a model with no format of its own (see ``prompt``):
  ``{"tool_calls": [{"name": ..., "arguments": {...}}]}`` or ``{"response": "..."}``.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar

from backends.builtin_server.tools.spec import ParsedOutput, ToolCall, ToolRequest, arguments_text

_DECODER = json.JSONDecoder()


def call_from(obj: Any, tools: ToolRequest) -> ToolCall | None:
    """``{"name": ..., "arguments" | "parameters": ...}`` -> a call, if it names an offered function."""
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    if tools.by_name(obj["name"]) is None:
        return None
    args = arguments_text(obj.get("arguments", obj.get("parameters")))
    return None if args is None else ToolCall(obj["name"], args)


def json_values(text: str, separators: str = "") -> list[Any] | None:
    """Every JSON value in ``text``, one after another (``separators`` may stand between them);
    None when anything else is there."""
    values: list[Any] = []
    at = 0
    while True:
        while at < len(text) and (text[at].isspace() or text[at] in separators):
            at += 1
        if at == len(text):
            return values
        try:
            value, at = _DECODER.raw_decode(text, at)
        except ValueError:
            return None
        values.append(value)


def _content(text: str) -> str | None:
    text = text.strip()
    return text or None


class ToolParser(ABC):
    name: ClassVar[str]
    # Text that starts a call: content before it can be streamed, and a stream holds back a
    # trailing piece of text that could still become one.
    markers: ClassVar[tuple[str, ...]] = ()

    def call_start(self, text: str) -> int | None:
        """Where the first call begins in ``text`` (a marker found), else None."""
        found = [i for i in (text.find(m) for m in self.markers) if i >= 0]
        return min(found) if found else None

    def held_back(self, text: str) -> int:
        """How many trailing characters of ``text`` could be the start of a marker."""
        keep = 0
        for marker in self.markers:
            for k in range(min(len(marker) - 1, len(text)), keep, -1):
                if text.endswith(marker[:k]):
                    keep = k
                    break
        return keep

    @abstractmethod
    def extract(self, text: str, tools: ToolRequest) -> ParsedOutput: ...


class HermesParser(ToolParser):
    name = "hermes"
    markers = ("<tool_call>",)
    _BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.S)

    def extract(self, text: str, tools: ToolRequest) -> ParsedOutput:
        calls: list[ToolCall] = []
        kept: list[str] = []
        at = 0
        for match in self._BLOCK.finditer(text):
            values = json_values(match.group(1))
            call = call_from(values[0], tools) if values and len(values) == 1 else None
            kept.append(text[at : match.start()] if call else text[at : match.end()])
            at = match.end()
            if call is not None:
                calls.append(call)
        kept.append(text[at:])
        return ParsedOutput(_content("".join(kept)), tuple(calls))


class Llama3JsonParser(ToolParser):
    name = "llama3_json"
    TAG = "<|python_tag|>"

    def call_start(self, text: str) -> int | None:
        stripped = text.lstrip()
        return len(text) - len(stripped) if stripped.startswith(("{", self.TAG)) else None

    def held_back(self, text: str) -> int:
        stripped = text.lstrip()
        # Only the very beginning can start a call: hold back a reply that may still become one.
        return len(text) if not stripped or self.TAG.startswith(stripped) else 0

    def extract(self, text: str, tools: ToolRequest) -> ParsedOutput:
        body = text.strip().removeprefix(self.TAG)
        values = json_values(body, separators=";") if body.lstrip().startswith("{") else None
        calls = [call_from(v, tools) for v in values or []]
        if not calls or any(c is None for c in calls):
            return ParsedOutput(_content(text))
        return ParsedOutput(None, tuple(c for c in calls if c is not None))


class MistralParser(ToolParser):
    name = "mistral"
    markers = ("[TOOL_CALLS]",)
    _NAMED = re.compile(r"\s*([A-Za-z0-9_.-]+)\[ARGS\]")

    def extract(self, text: str, tools: ToolRequest) -> ParsedOutput:
        start = self.call_start(text)
        if start is None:
            return ParsedOutput(_content(text))
        calls: list[ToolCall] = []
        for part in text[start:].split(self.markers[0])[1:]:
            found = self._calls(part, tools)
            if found is None:
                return ParsedOutput(_content(text))
            calls += found
        return ParsedOutput(_content(text[:start]), tuple(calls))

    def _calls(self, part: str, tools: ToolRequest) -> list[ToolCall] | None:
        named = self._NAMED.match(part)
        if named:  # name[ARGS]{...}
            values = json_values(part[named.end() :])
            call = call_from({"name": named.group(1), "arguments": values[0]}, tools) if values and len(values) == 1 else None
            return [call] if call else None
        values = json_values(part)
        if not values or len(values) != 1 or not isinstance(values[0], list):
            return None
        calls = [call_from(v, tools) for v in values[0]]
        return None if not calls or any(c is None for c in calls) else [c for c in calls if c]


class GenericParser(ToolParser):
    """The JSON reply modelserve asks of a model with no tool format (and constrains it to)."""

    name = "generic"

    def call_start(self, text: str) -> int | None:
        stripped = text.lstrip()
        return len(text) - len(stripped) if stripped.startswith("{") else None

    def held_back(self, text: str) -> int:
        return len(text) if not text.strip() else 0

    def extract(self, text: str, tools: ToolRequest) -> ParsedOutput:
        values = json_values(text)
        if not values or len(values) != 1 or not isinstance(values[0], dict):
            return ParsedOutput(_content(text))
        obj = values[0]
        if isinstance(obj.get("response"), str) and len(obj) == 1:
            return ParsedOutput(obj["response"])
        raw = obj.get("tool_calls") if "tool_calls" in obj else [obj.get("tool_call")] if "tool_call" in obj else None
        calls = [call_from(v, tools) for v in raw] if isinstance(raw, list) else []
        if not calls or any(c is None for c in calls):
            return ParsedOutput(_content(text))
        return ParsedOutput(None, distinct(c for c in calls if c))


def distinct(calls: Iterable[ToolCall]) -> tuple[ToolCall, ...]:
    """The calls without repeats: a small model asked for parallel calls writes the same one again."""
    seen: set[tuple[str, str]] = set()
    out = []
    for call in calls:
        if (call.name, call.arguments) not in seen:
            seen.add((call.name, call.arguments))
            out.append(call)
    return tuple(out)


PARSERS: dict[str, ToolParser] = {p.name: p for p in (HermesParser(), Llama3JsonParser(), MistralParser(),
                                                      GenericParser())}  # fmt: skip
