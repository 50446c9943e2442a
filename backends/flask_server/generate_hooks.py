"""The objects handed to HF ``generate()``: per-row stopping criteria and the streaming sink.

generate() calls these on the scheduler thread after every decoding step; they decide when a
row is done (its own budget, eos, stop string, a cancelled stream, a shutdown) and turn a stream's
token ids into text deltas.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import LogitsProcessor, StoppingCriteria
from transformers.generation.streamers import BaseStreamer

from backends.flask_server.generation import find_stop, held_back
from backends.flask_server.jobs import StreamDelta, StreamEvent, StreamToolCall
from backends.flask_server.tools.stream import CallDelta, ContentDelta, ToolEvent, ToolStream


class OpenAIPenalties(LogitsProcessor):
    """OpenAI's presence and frequency penalties: subtracted from a token's logit once it has
    appeared in the reply (presence), and for every time it has (frequency). The prompt's tokens
    do not count: ``width`` columns of every row are prompt."""

    def __init__(self, *, presence: float, frequency: float, width: int) -> None:
        self.presence, self.frequency, self.width = presence, frequency, width

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.width :]
        if generated.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
        penalised: torch.FloatTensor = scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)  # type: ignore[assignment]
        return penalised


class LogitBias(LogitsProcessor):
    """OpenAI's logit_bias: a fixed amount added to the chosen tokens' logits."""

    def __init__(self, bias: Sequence[tuple[int, float]], vocab_size: int) -> None:
        self.ids = torch.tensor([i for i, _ in bias if i < vocab_size], dtype=torch.long)
        self.values = torch.tensor([b for i, b in bias if i < vocab_size])

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores[:, self.ids] += self.values.to(scores.dtype)
        return scores


class BatchStopper(StoppingCriteria):
    """Per-row stop: its own token budget, its own stop strings, or a shutdown."""

    def __init__(
        self,
        *,
        decode: Callable[[Sequence[int]], str],
        width: int,
        max_new: list[int],
        stops: list[tuple[str, ...]],
        eos_ids: frozenset[int],
        abort: threading.Event,
    ) -> None:
        self.decode = decode
        self.width = width
        self.max_new = max_new
        self.stops = stops
        self.eos_ids = eos_ids
        self.abort = abort
        self.done = [False] * len(max_new)

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        if self.abort.is_set():
            self.done = [True] * len(self.done)
        new_len = input_ids.shape[1] - self.width
        for i, done in enumerate(self.done):
            if not done:
                self.done[i] = self._row_done(i, input_ids[i], new_len)
        result: torch.BoolTensor = torch.tensor(self.done, dtype=torch.bool, device=input_ids.device)  # type: ignore[assignment]
        return result

    def _row_done(self, i: int, row: torch.Tensor, new_len: int) -> bool:
        if new_len >= self.max_new[i] or int(row[-1]) in self.eos_ids:
            return True
        # Decoding every step is cheap next to a forward pass, and only rows with stop strings pay it.
        return bool(self.stops[i]) and find_stop(self.decode(row[self.width :].tolist()), self.stops[i]) is not None


class StreamSink(BaseStreamer):
    """A BaseStreamer for one row: turns token ids into text deltas, holding back possible stop strings."""

    def __init__(
        self,
        *,
        decode: Callable[[Sequence[int]], str],
        eos_ids: frozenset[int],
        stops: tuple[str, ...],
        max_new: int,
        emit: Callable[[StreamEvent], None],
        tool_stream: ToolStream | None = None,
    ) -> None:
        self.tool_stream = tool_stream  # with tools: content and calls, split
        self.decode = decode
        self.eos_ids = eos_ids
        self.stops = stops
        self.max_new = max_new
        self.emit = emit
        self.ids: list[int] = []
        self.sent = 0  # characters already emitted
        self.prompt_seen = False
        self.finished = False
        self.stopped_by_string = False
        self.reason = "length"

    @property
    def count(self) -> int:
        return len(self.ids)

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() first hands over the prompt
            self.prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            if self.finished:
                return
            self._add(int(token))

    def end(self) -> None:
        """generate() is done; the engine calls flush() itself after it returns."""

    def _add(self, token: int) -> None:
        if token in self.eos_ids:
            self.finished, self.reason = True, "stop"
            return
        self.ids.append(token)
        text = self.decode(self.ids)
        at = find_stop(text, self.stops) if self.stops else None
        if at is not None:
            self._send(text[:at])
            self.finished, self.reason, self.stopped_by_string = True, "stop", True
            return
        end = len(text) - held_back(text, self.stops)
        if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
            end = min(end, len(text) - 1)
        self._send(text[:end])
        if len(self.ids) >= self.max_new:
            self.finished, self.reason = True, "length"

    def _send(self, text: str) -> None:
        if self.tool_stream is not None:
            self._emit_tool_events(self.tool_stream.feed(text))
        elif len(text) > self.sent:
            self.emit(StreamDelta(text[self.sent :]))
            self.sent = len(text)

    def _emit_tool_events(self, events: list[ToolEvent]) -> None:
        for event in events:
            if isinstance(event, ContentDelta):
                self.emit(StreamDelta(event.text))
            elif isinstance(event, CallDelta):
                self.emit(StreamToolCall(event.index, event.call))

    def flush(self) -> None:
        text = self.decode(self.ids)
        if self.tool_stream is not None:
            if self.stopped_by_string:
                at = find_stop(text, self.stops)
                text = text[:at] if at is not None else text
            events, parsed = self.tool_stream.finish(text)
            self._emit_tool_events(events)
            if parsed.calls:
                self.reason = "tool_calls"
        elif not self.stopped_by_string:
            self._send(text)


class StreamStopper(StoppingCriteria):
    def __init__(self, *, sink: StreamSink, cancelled: threading.Event, abort: threading.Event) -> None:
        self.sink = sink
        self.cancelled = cancelled
        self.abort = abort

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        stop = self.sink.finished or self.cancelled.is_set() or self.abort.is_set()
        result: torch.BoolTensor = torch.full(  # type: ignore[assignment]
            (input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device
        )
        return result
