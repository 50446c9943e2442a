"""One choice of one request while it decodes: its tokens, its text, and when it is done.

A row turns tokens into what its client sees: for a stream, text deltas as they become safe to
send (a possible stop string or tool-call marker is held back; half a multi-byte character
waits), tool calls once parsed; for a plain request, the final text, cut at its stop string, and
its calls. It ends at eos, a stop string, its token budget, or when its client goes away.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backends.builtin_server.engine.jobs import (
    Choice,
    Job,
    StreamChoiceFinished,
    StreamDelta,
    StreamToolCall,
    TokenLogprob,
)
from backends.builtin_server.engine.sampling import Pick, RowSampler
from backends.builtin_server.engine.stops import find_stop, held_back, matched_stop
from backends.builtin_server.errors import ApiError
from backends.builtin_server.tools.parsers import ToolParser
from backends.builtin_server.tools.stream import CallDelta, ContentDelta, ToolStream

if TYPE_CHECKING:
    import torch

log = logging.getLogger("modelserve.server")

Decode = Callable[[Sequence[int]], str]


@dataclass
class Row:
    job: Job
    choice: int
    prompt_tokens: int
    max_new: int
    sampler: RowSampler
    decode: Decode
    eos_ids: frozenset[int]
    describe: Callable[[Pick], TokenLogprob]  # ids -> the strings and bytes a client gets
    parser: ToolParser | None = None
    started: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    last_token_at: float | None = None
    reason: str | None = None  # set when the row is done; "failed": its request got a 500
    stopped_at: int | None = None  # tokens up to the one that completed a stop string
    stop_string: str | None = None  # which stop string ended the reply
    _sent: int = 0  # characters of text already streamed
    _pending_logprobs: list[TokenLogprob] = field(default_factory=list)
    _logprobs: list[TokenLogprob] = field(default_factory=list)
    _tool_stream: ToolStream | None = None

    def __post_init__(self) -> None:
        request = self.job.request
        if self.parser is not None and request.tools is not None and self.streaming:
            self._tool_stream = ToolStream(self.parser, request.tools)

    @property
    def streaming(self) -> bool:
        return self.job.events is not None

    @property
    def ids(self) -> list[int]:
        return self.sampler.generated

    @property
    def done(self) -> bool:
        return self.reason is not None

    def advance(self, logits: torch.Tensor) -> int:
        """Pick this row's next token from its logits and take it; the token goes back to the batch.

        A failure of this row's sampling (a bug: sampling settings or a grammar) fails its request
        alone, with a 500, and ends the row: the batch's other rows go on, and nobody waits forever.
        """
        try:
            token, pick = self.sampler.pick(logits)
        except Exception as exc:
            log.exception("sampling failed for one row; failing its request")
            self.job.fail(ApiError(500, f"generation failed: {type(exc).__name__}: {exc}", error_type="server_error"))
            self.reason = "failed"
            return min(self.eos_ids, default=0)  # a placeholder for the batch: the row leaves it this step
        self.add(token, pick)
        return token

    def add(self, token: int, pick: Pick | None) -> None:
        """The token the sampler chose (already in ``ids``)."""
        now = time.monotonic()
        self.first_token_at = self.first_token_at or now
        self.last_token_at = now
        if pick is not None:
            described = self.describe(pick)
            self._logprobs.append(described)
            self._pending_logprobs.append(described)
        stops = self.job.request.stop
        if token in self.eos_ids:
            self.ids.pop()  # eos ends the reply; it is not part of it
            self.reason = "stop"
        elif stops or self.streaming:
            text = self.decode(self.ids)
            matched = matched_stop(text, stops) if stops else None
            if matched is not None:
                self.reason, self.stopped_at, self.stop_string = "stop", len(self.ids), matched[1]
                self._stream(text[: matched[0]], final=True)
            elif self.streaming:
                end = len(text) - held_back(text, stops)
                if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                    end = min(end, len(text) - 1)
                self._stream(text[:end], final=False)
        if self.reason is None and len(self.ids) >= self.max_new:
            # A grammar that is complete at the last token ended the reply, as its end token would have.
            self.reason = "stop" if self.sampler.complete else "length"

    def cancel(self) -> None:
        self.reason = "cancelled"

    def _stream(self, text: str, *, final: bool) -> None:
        if not self.streaming:
            return
        if self._tool_stream is not None and not final:
            for event in self._tool_stream.feed(text):
                self._emit_tool(event)
            return
        if self._tool_stream is None and len(text) > self._sent:
            logprobs = tuple(self._pending_logprobs) if self.sampler.top_logprobs is not None else None
            self.job.emit(StreamDelta(text[self._sent :], self.choice, logprobs))
            self._sent = len(text)
            self._pending_logprobs = []

    def _emit_tool(self, event: ContentDelta | CallDelta) -> None:
        if isinstance(event, ContentDelta):
            self.job.emit(StreamDelta(event.text, self.choice))
        else:
            self.job.emit(StreamToolCall(event.index, event.call, self.choice))

    def _final_text(self) -> str:
        text = self.decode(self.ids)
        at = find_stop(text, self.job.request.stop) if self.job.request.stop else None
        return text[:at] if at is not None else text

    @property
    def completion_tokens(self) -> int:
        return self.stopped_at if self.stopped_at is not None else len(self.ids)

    def finish(self) -> Choice:
        """The row's result; for a stream, the last deltas and its finish event go out first."""
        text, reason = self._final_text(), self.reason or "length"
        calls: tuple[Any, ...] = ()
        tools = self.job.request.tools
        if self.parser is not None and tools is not None:
            if self._tool_stream is not None:
                events, parsed = self._tool_stream.finish(text)
                for event in events:
                    self._emit_tool(event)
            else:
                parsed = self.parser.extract(text, tools)
            text_out: str | None = parsed.content
            calls = parsed.calls
            reason = "tool_calls" if calls else reason
        else:
            text_out = text
            if self.streaming and reason != "cancelled":
                self._stream(text, final=True)
        if self.streaming:
            self.job.emit(StreamChoiceFinished(self.choice, reason, self.stop_string))
        logprobs = tuple(self._logprobs) if self.sampler.top_logprobs is not None else None
        return Choice(text_out, self.completion_tokens, reason, calls, logprobs, self.stop_string)
