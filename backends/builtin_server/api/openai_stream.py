"""``stream: true`` on Chat Completions and Completions: OpenAI's chunk objects, then ``data: [DONE]``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from backends.builtin_server.api.common import openai_usage
from backends.builtin_server.api.logprobs import chat_logprobs, completion_logprobs
from backends.builtin_server.api.sse import Frames, StreamOutcome, sse
from backends.builtin_server.engine.jobs import (
    StreamChoiceFinished,
    StreamDelta,
    StreamFailed,
    StreamFinished,
    StreamHandle,
    StreamStarted,
    StreamToolCall,
    TokenLogprob,
)


def openai_frames(*, rid: str, model: str, chat: bool, include_usage: bool) -> Frames:
    def frames(handle: StreamHandle, started: StreamStarted, outcome: StreamOutcome) -> Iterator[str]:
        for chunk in chunk_objects(handle, outcome, rid=rid, model=model, chat=chat, include_usage=include_usage):
            yield sse(chunk)
        yield "data: [DONE]\n\n"

    return frames


def chunk_objects(handle: StreamHandle, outcome: StreamOutcome, *, rid: str, model: str, chat: bool,
                  include_usage: bool) -> Iterator[dict[str, Any]]:  # fmt: skip
    """The stream's chunk objects in order; a late failure is one error object, last (vLLM's way:
    the headers are gone). Other surfaces translate these (api/anthropic_messages.py, ...)."""
    chunks = _Chunks(rid=rid, created=int(time.time()), model=model, chat=chat)
    if chat:
        for choice in range(handle.n):
            yield chunks.delta(choice, None, None, role=True)
    while True:
        event = handle.next_event()
        if isinstance(event, StreamDelta):
            yield chunks.delta(event.choice, event.text, None, logprobs=event.logprobs)
        elif isinstance(event, StreamToolCall):
            yield chunks.tool_call(event)
        elif isinstance(event, StreamChoiceFinished):
            reason = "stop" if event.finish_reason == "cancelled" else event.finish_reason
            yield chunks.delta(event.choice, None if chat else "", reason, stop=event.stop)
        elif isinstance(event, StreamFinished):
            outcome.completion_tokens, outcome.cached_tokens = event.completion_tokens, event.cached_tokens
            if include_usage:
                yield chunks.usage(event)
            return
        elif isinstance(event, StreamFailed):
            outcome.status = event.error.status
            yield event.error.body()
            return


@dataclass(frozen=True)
class _Chunks:
    """The chunk objects of one stream: chat.completion.chunk or text_completion."""

    rid: str
    created: int
    model: str
    chat: bool

    def _wrap(self, **fields: Any) -> dict[str, Any]:
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return {"id": self.rid, "object": obj, "created": self.created, "model": self.model, **fields}

    def delta(self, index: int, text: str | None, finish: str | None, *, role: bool = False,
              logprobs: tuple[TokenLogprob, ...] | None = None, stop: str | None = None) -> dict[str, Any]:  # fmt: skip
        if self.chat:
            content: dict[str, str] = {"role": "assistant", "content": ""} if role else {}
            if text is not None:
                content["content"] = text
            lp: dict[str, Any] | None = (
                {"content": chat_logprobs(logprobs), "refusal": None} if logprobs is not None else None
            )
            choice: dict[str, Any] = {"index": index, "delta": content, "logprobs": lp, "finish_reason": finish}
        else:
            lp = completion_logprobs(logprobs) if logprobs is not None else None
            choice = {"index": index, "text": text or "", "logprobs": lp, "finish_reason": finish}
        if stop is not None:
            choice["stop_reason"] = stop
        return self._wrap(choices=[choice])

    def tool_call(self, event: StreamToolCall) -> dict[str, Any]:
        """One whole call as OpenAI streams its first (and here only) piece: index, id, name, arguments."""
        entry = {"index": event.index, **event.call.as_openai()}
        choice = {"index": event.choice, "delta": {"tool_calls": [entry]}, "logprobs": None, "finish_reason": None}
        return self._wrap(choices=[choice])

    def usage(self, event: StreamFinished) -> dict[str, Any]:
        usage = openai_usage(event.prompt_tokens, event.completion_tokens, event.cached_tokens)
        return self._wrap(choices=[], usage=usage)
