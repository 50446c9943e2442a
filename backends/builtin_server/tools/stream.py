"""A streamed reply split into content deltas and tool calls, the way OpenAI streams them.

Content is sent as soon as it cannot be the start of a call (a family's marker, held back while
it may still be one). Calls are sent once the reply is complete and parsed, each as one
``delta.tool_calls`` entry (id, name and the whole arguments): the ``openai`` SDK and AgentScope
assemble entries whatever their size. In generic mode the reply is JSON: the text of a
``{"response": "..."}`` reply is decoded and sent as it grows.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from backends.builtin_server.tools.parsers import GenericParser, ToolParser
from backends.builtin_server.tools.spec import ParsedOutput, ToolCall, ToolRequest

_RESPONSE_START = re.compile(r'^\s*\{\s*"response"\s*:\s*"')


@dataclass(frozen=True)
class ContentDelta:
    text: str


@dataclass(frozen=True)
class CallDelta:
    index: int
    call: ToolCall


ToolEvent = ContentDelta | CallDelta


def partial_json_string(body: str) -> str:
    """The decoded text of a JSON string whose opening quote came before ``body``, as far as it
    is complete (an escape cut in half waits for its end)."""
    end, escaped = 0, False
    for i, ch in enumerate(body):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
            continue
        elif ch == '"':
            end = i
            break
        end = i + 1
    else:
        if escaped:
            end = len(body) - 1
    piece = body[:end]
    for cut in range(len(piece), max(len(piece) - 6, -1), -1):  # a \uXXXX escape may be unfinished
        try:
            value = json.loads(f'"{piece[:cut]}"')
            return value if isinstance(value, str) else ""
        except ValueError:
            continue
    return ""


@dataclass
class ToolStream:
    parser: ToolParser
    tools: ToolRequest
    sent: str = ""  # the content sent so far
    decoding_response: bool = False  # generic mode, and the reply is {"response": "..."}

    @property
    def generic(self) -> bool:
        return isinstance(self.parser, GenericParser)

    def feed(self, text: str) -> list[ToolEvent]:
        """The reply so far -> the deltas it allows now."""
        if self.generic:
            match = _RESPONSE_START.match(text)
            if match is None:
                return []
            self.decoding_response = True
            return self._upto(partial_json_string(text[match.end() :]))
        start = self.parser.call_start(text)
        return self._upto(text[: start if start is not None else len(text) - self.parser.held_back(text)])

    def finish(self, text: str) -> tuple[list[ToolEvent], ParsedOutput]:
        """The whole reply -> the last deltas, and what it said."""
        parsed = self.parser.extract(text, self.tools)
        if parsed.calls:
            return [CallDelta(i, call) for i, call in enumerate(parsed.calls)], parsed
        if self.decoding_response:
            # A reply cut short inside the string leaves what was decoded so far as the content.
            final = parsed.content if parsed.content is not None and parsed.content.startswith(self.sent) else self.sent
            return self._upto(final), ParsedOutput(final or None)
        return self._upto(text), parsed

    def _upto(self, text: str) -> list[ToolEvent]:
        """Send ``text`` beyond what was sent (content only ever grows)."""
        if len(text) <= len(self.sent) or not text.startswith(self.sent):
            return []
        delta = ContentDelta(text[len(self.sent) :])
        self.sent = text
        return [delta]
