"""The recent-requests ring: one summary per answered POST (route, status, tokens, time to first
token, duration, client address), never a body, in a bounded in-memory deque that
``GET /modelserve/requests?after=ID`` serves to the dashboard.

Ids grow by one per request; ``epoch`` names this server run, so a reader that sees another
epoch knows the server restarted and its ids began again.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

CAPACITY = 256  # summaries kept; older ones fall off


@dataclass(frozen=True)
class RequestSummary:
    id: int
    time: float  # epoch seconds when the answer ended
    method: str
    route: str
    model: str
    status: int
    stream: bool
    prompt_tokens: int | None
    completion_tokens: int | None
    cached_tokens: int | None  # prompt tokens served from a prefix cache, when the engine says
    ttft_s: float | None  # arrival to the first token the client saw (streams)
    duration_s: float
    client: str | None

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["tokens_per_s"] = tokens_per_second(self.completion_tokens, self.duration_s, self.ttft_s)
        return out


def tokens_per_second(completion: int | None, duration: float, ttft: float | None) -> float | None:
    """Generation speed as a client sees it: tokens over the time after the first one (a stream),
    or over the whole request when the first token's time is unknown."""
    if not completion:
        return None
    span = duration - ttft if ttft is not None and completion > 1 else duration
    return round(completion / span, 2) if span > 0 else None


class RecentRequests:
    """Thread-safe: every HTTP thread adds, the dashboard reads."""

    def __init__(self, capacity: int = CAPACITY, *, clock: Callable[[], float] = time.time) -> None:
        self.capacity = capacity
        self.epoch = uuid.uuid4().hex[:12]
        self._clock = clock
        self._lock = threading.Lock()
        self._items: deque[RequestSummary] = deque(maxlen=capacity)
        self._next = 1

    def add(self, *, method: str, route: str, model: str, status: int, stream: bool, duration_s: float,
            prompt_tokens: int | None = None, completion_tokens: int | None = None,
            cached_tokens: int | None = None, ttft_s: float | None = None, client: str | None = None) -> RequestSummary:  # fmt: skip
        with self._lock:
            summary = RequestSummary(self._next, round(self._clock(), 3), method, route, model, status, stream,
                                     prompt_tokens, completion_tokens, cached_tokens,
                                     None if ttft_s is None else round(ttft_s, 4), round(duration_s, 4), client)  # fmt: skip
            self._next += 1
            self._items.append(summary)
        return summary

    def since(self, after: int) -> list[RequestSummary]:
        with self._lock:
            return [s for s in self._items if s.id > after]

    def page(self, after: int) -> dict[str, Any]:
        """The route's body: this run's epoch, the ring's size, and the summaries after ``after``."""
        return {"epoch": self.epoch, "capacity": self.capacity, "requests": [s.as_json() for s in self.since(after)]}
