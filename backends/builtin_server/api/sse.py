"""Server-sent events: how every surface writes a frame, and what a stream reports when it ends."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from backends.builtin_server.engine.jobs import StreamHandle, StreamStarted


@dataclass
class StreamOutcome:
    """Filled in by a surface's frames as they go: the request log line and metrics read it when
    the body ends (the request context is gone by then)."""

    status: int = 200
    completion_tokens: int = 0
    cached_tokens: int = 0


# A surface's stream: the engine's events in, SSE frames out; the first event (the prompt's
# token count) has been read already, so a prompt that does not fit was a plain 400.
Frames = Callable[[StreamHandle, StreamStarted, StreamOutcome], Iterator[str]]


def sse(obj: Any, *, event: str | None = None) -> str:
    """One frame: ``data: JSON`` (OpenAI), with an ``event:`` line where the protocol names events."""
    data = f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"
    return f"event: {event}\n{data}" if event else data
