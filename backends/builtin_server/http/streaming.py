"""Streamed responses: the SSE body around a surface's frames (api/), and its log line.

The response body is a generator that outlives the request context, so it carries what it needs
(the metrics, the route) and logs the request itself when the body ends or the client hangs up;
either way the request's rows are cancelled, so a client that went away stops its generation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import Response, g, request

from backends.builtin_server.api.sse import Frames, StreamOutcome
from backends.builtin_server.engine.jobs import StreamFailed, StreamHandle, StreamStarted
from backends.builtin_server.engine.metrics import Metrics
from backends.builtin_server.engine.request import GenerationRequest
from backends.builtin_server.http.recent_requests import RecentRequests
from backends.builtin_server.http.state import current_state

if TYPE_CHECKING:
    from backends.builtin_server.engine.scheduler import Engine

log = logging.getLogger("modelserve.server")


def stream_response(engine: Engine, req: GenerationRequest, frames: Frames) -> Response:
    handle = engine.submit_stream(req)
    # Wait until the scheduler has tokenised the prompt: a prompt that does not fit is still a
    # proper 400 here, before any 200 header is sent.
    first = handle.next_event()
    if isinstance(first, StreamFailed):
        raise first.error
    started = first if isinstance(first, StreamStarted) else StreamStarted(prompt_tokens=0)
    g.streaming = True
    state = current_state()
    done = _StreamLog(
        metrics=engine.metrics,
        route=request.url_rule.rule if request.url_rule else request.path,
        method=request.method,
        path=request.path,
        started=g.started,
        prompt_tokens=started.prompt_tokens,
        who="".join(f" {key}={g.get(key)!r}" for key in ("user", "metadata") if g.get(key) is not None),
        recent=state.recent,
        model=state.served_name,
        client=request.remote_addr,
        handle=handle,
    )
    return Response(
        _body(handle, started, frames, done),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _body(handle: StreamHandle, started: StreamStarted, frames: Frames, done: _StreamLog) -> Iterator[str]:
    outcome = StreamOutcome()
    try:
        yield from frames(handle, started, outcome)
    except GeneratorExit:
        outcome.status = 499  # nginx's "client closed request"
        raise
    finally:
        # Runs on normal end and when the server closes us after a failed write (client gone).
        handle.cancel()
        done.finish(outcome)


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
    recent: RecentRequests | None = None
    model: str = ""
    client: str | None = None
    handle: StreamHandle | None = None  # knows when the first token went out

    def finish(self, outcome: StreamOutcome) -> None:
        self.metrics.count_request(self.route, outcome.status)
        first = self.handle.first_token_at if self.handle is not None else None
        if self.recent is not None:
            self.recent.add(method=self.method, route=self.route, model=self.model, status=outcome.status, stream=True,
                            duration_s=time.monotonic() - self.started, prompt_tokens=self.prompt_tokens,
                            completion_tokens=outcome.completion_tokens, cached_tokens=outcome.cached_tokens,
                            client=self.client, ttft_s=None if first is None else first - self.started)  # fmt: skip
        log.info(
            "%s %s -> %d (stream) prompt_tokens=%d completion_tokens=%d cached_tokens=%d %.3fs%s",
            self.method,
            self.path,
            outcome.status,
            self.prompt_tokens,
            outcome.completion_tokens,
            outcome.cached_tokens,
            time.monotonic() - self.started,
            self.who,
        )
