"""``stream: true``: server-sent events in OpenAI's chunk shapes, ending with ``data: [DONE]``.

The response body is a generator that outlives the request context, so it carries what it needs
(ids, names, the metrics) and logs the request itself when the body ends or the client hangs up.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Response, g, request

from backends.flask_server.generation import GenerationRequest
from backends.flask_server.jobs import (
    StreamChoiceFinished,
    StreamDelta,
    StreamFailed,
    StreamFinished,
    StreamHandle,
    StreamStarted,
    StreamToolCall,
    TokenLogprob,
)
from backends.flask_server.logprobs import chat_logprobs, completion_logprobs
from backends.flask_server.metrics import Metrics

if TYPE_CHECKING:
    from backends.flask_server.engine import Engine

log = logging.getLogger("modelserve.flask_server")


def stream_response(engine: Engine, req: GenerationRequest, rid: str, *, chat: bool, served_name: str) -> Response:
    handle = engine.submit_stream(req)
    # Wait until the scheduler has tokenised the prompt: a prompt that does not fit is still a
    # proper 400 here, before any 200 header is sent.
    first = handle.next_event()
    if isinstance(first, StreamFailed):
        raise first.error
    chunks = _Chunks(rid=rid, created=int(time.time()), model=served_name, chat=chat)
    g.streaming = True
    done = _StreamLog(
        metrics=engine.metrics,
        route=request.url_rule.rule if request.url_rule else request.path,
        method=request.method,
        path=request.path,
        started=g.started,
        prompt_tokens=first.prompt_tokens if isinstance(first, StreamStarted) else 0,
        who="".join(f" {key}={g.get(key)!r}" for key in ("user", "metadata") if g.get(key) is not None),
    )
    return Response(
        _events(handle, chunks, include_usage=req.include_usage, done=done),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _events(handle: StreamHandle, chunks: _Chunks, *, include_usage: bool, done: _StreamLog) -> Iterator[str]:
    completion_tokens = 0
    status = 200
    try:
        if chunks.chat:
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
                yield chunks.delta(event.choice, None if chunks.chat else "", reason)
            elif isinstance(event, StreamFinished):
                completion_tokens = event.completion_tokens
                if include_usage:
                    yield chunks.usage(event)
                break
            elif isinstance(event, StreamFailed):
                # Headers are gone already; vLLM reports a late failure as an error event.
                status = event.error.status
                yield sse(event.error.body())
                break
        yield "data: [DONE]\n\n"
    except GeneratorExit:
        status = 499  # nginx's "client closed request"
        raise
    finally:
        # Runs on normal end and when werkzeug closes us after a failed write (client gone).
        handle.cancel()
        done.finish(status, completion_tokens)


@dataclass(frozen=True)
class _Chunks:
    """The chunk objects of one stream: chat.completion.chunk or text_completion."""

    rid: str
    created: int
    model: str
    chat: bool

    def _wrap(self, **fields: Any) -> str:
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return sse({"id": self.rid, "object": obj, "created": self.created, "model": self.model, **fields})

    def delta(self, index: int, text: str | None, finish: str | None, *, role: bool = False,
              logprobs: tuple[TokenLogprob, ...] | None = None) -> str:  # fmt: skip
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
        return self._wrap(choices=[choice])

    def tool_call(self, event: StreamToolCall) -> str:
        """One whole call as OpenAI streams its first (and here only) piece: index, id, name, arguments."""
        entry = {"index": event.index, **event.call.as_openai()}
        choice = {"index": event.choice, "delta": {"tool_calls": [entry]}, "logprobs": None, "finish_reason": None}
        return self._wrap(choices=[choice])

    def usage(self, event: StreamFinished) -> str:
        usage = {
            "prompt_tokens": event.prompt_tokens,
            "completion_tokens": event.completion_tokens,
            "total_tokens": event.prompt_tokens + event.completion_tokens,
        }
        return self._wrap(choices=[], usage=usage)


@dataclass(frozen=True)
class _StreamLog:
    """Logs a streamed request when its body ends (the request context is gone by then)."""

    metrics: Metrics
    route: str
    method: str
    path: str
    started: float
    prompt_tokens: int
    who: str = ""  # the request's user and metadata, as the log line shows them

    def finish(self, status: int, completion_tokens: int) -> None:
        self.metrics.count_request(self.route, status)
        log.info(
            "%s %s -> %d (stream) prompt_tokens=%d completion_tokens=%d %.3fs%s",
            self.method,
            self.path,
            status,
            self.prompt_tokens,
            completion_tokens,
            time.monotonic() - self.started,
            self.who,
        )


def sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"
