"""Chat Completions chunks -> the Messages stream, in the order the Anthropic SDK assembles:

    message_start, ping,
    per block: content_block_start, content_block_delta (text_delta | input_json_delta)..., content_block_stop,
    message_delta {stop_reason, stop_sequence, usage}, message_stop

A text run is one text block; each tool call (a chat ``tool_calls`` index) is one tool_use block
whose ``input`` arrives as ``input_json_delta`` pieces of its JSON. The prompt's token count goes
in ``message_start`` when the caller knows it there (the built-in server does), else it follows
in ``message_delta`` with the output's (the chat stream reports usage at its end).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from surfaces import chat
from surfaces.anthropic import ERROR_TYPES, message_id, stop_reason, usage
from surfaces.anthropic_wire import MessagesRequest

Out = tuple[str, dict[str, Any]]  # (event name, data)


class MessagesStream:
    """One stream's state: feed it the chat chunks in order, then ``finish()``."""

    def __init__(self, req: MessagesRequest, *, chat_id: str = "", input_tokens: int | None = None) -> None:
        self._req = req
        self._id = message_id(chat_id)
        self._input_tokens = input_tokens
        self._open: tuple[str, int] | None = None  # ("text", -1) or ("tool", chat tool index)
        self._blocks = 0
        self._finish: str | None = None
        self._stop: str | int | None = None
        self._usage: chat.Usage | None = None
        self._pieces = 0  # content deltas seen: the output count when the engine reports no usage
        self._arguments: dict[int, str] = {}  # each tool block's JSON so far: whole calls are tool_use

    def start(self) -> list[Out]:
        start = {"input_tokens": self._input_tokens or 0, "output_tokens": 0}
        msg: dict[str, Any] = {"id": self._id, "type": "message", "role": "assistant", "model": self._req.model, "content": [],
               "stop_reason": None, "stop_sequence": None, "usage": start}  # fmt: skip
        return [("message_start", {"type": "message_start", "message": msg}), ("ping", {"type": "ping"})]

    def feed(self, raw: Mapping[str, Any] | str) -> list[Out]:
        """One chat chunk: a parsed object, or its JSON text (parsed here, faster, by pydantic-core)."""
        chunk = chat.Chunk.model_validate_json(raw) if isinstance(raw, str) else chat.Chunk.model_validate(raw)
        out: list[Out] = []
        if chunk.usage is not None:
            self._usage = chunk.usage
        for choice in chunk.choices[:1]:  # Messages has one reply; n is never set by this translator
            if choice.delta.content:
                self._pieces += 1
                out += self._text(choice.delta.content)
            for call in choice.delta.tool_calls or ():
                self._pieces += 1
                out += self._tool(call)
            if choice.finish_reason is not None:
                self._finish, self._stop = choice.finish_reason, choice.stop_reason
                out += self._close()
        return out

    def finish(self) -> list[Out]:
        out = self._close()
        if self._blocks == 0:  # a reply with nothing in it still has its (empty) text block
            out += self._text("") + self._close()
        called = bool(self._arguments) and all(chat.arguments_object(a) is not None for a in self._arguments.values())
        reason, sequence = stop_reason(self._finish, self._stop, self._req.stop_sequences, called=called)
        counts = usage(self._usage)
        delta_usage: dict[str, int] = {"output_tokens": counts["output_tokens"] if self._usage else self._pieces}
        if self._usage is not None and self._input_tokens is None:
            delta_usage.update(input_tokens=counts["input_tokens"], cache_read_input_tokens=counts["cache_read_input_tokens"])
        delta = {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": sequence}, "usage": delta_usage}
        return [*out, ("message_delta", delta), ("message_stop", {"type": "message_stop"})]

    def error(self, status: int, message: str) -> list[Out]:
        """A failure after the 200 went out: Anthropic's ``error`` event (the stream ends there)."""
        kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return [("error", {"type": "error", "error": {"type": kind, "message": message}})]

    # ------------------------------------------------------------------------- blocks

    def _text(self, text: str) -> list[Out]:
        out: list[Out] = []
        if self._open is None or self._open[0] != "text":
            out += self._close()
            out.append(self._begin({"type": "text", "text": ""}, ("text", -1)))
        if text:
            out.append(self._delta({"type": "text_delta", "text": text}))
        return out

    def _tool(self, call: chat.CallDelta) -> list[Out]:
        out: list[Out] = []
        if self._open != ("tool", call.index):
            out += self._close()
            block = {"type": "tool_use", "id": call.id or f"toolu_{uuid.uuid4().hex[:24]}",
                     "name": call.function.name or "", "input": {}}  # fmt: skip
            out.append(self._begin(block, ("tool", call.index)))
        self._arguments[call.index] = self._arguments.get(call.index, "") + (call.function.arguments or "")
        if call.function.arguments:
            out.append(self._delta({"type": "input_json_delta", "partial_json": call.function.arguments}))
        return out

    def _begin(self, block: dict[str, Any], key: tuple[str, int]) -> Out:
        self._open = key
        self._blocks += 1
        return "content_block_start", {"type": "content_block_start", "index": self._blocks - 1, "content_block": block}

    def _delta(self, delta: dict[str, Any]) -> Out:
        return "content_block_delta", {"type": "content_block_delta", "index": self._blocks - 1, "delta": delta}

    def _close(self) -> list[Out]:
        if self._open is None:
            return []
        self._open = None
        return [("content_block_stop", {"type": "content_block_stop", "index": self._blocks - 1})]
