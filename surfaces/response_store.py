"""``previous_response_id``: the conversations stored responses end, kept in memory, bounded.

A stored response (``response_store`` is not false) keeps its conversation (the earlier turns, its input
and its output, as chat messages; never its ``instructions``, which OpenAI does not carry over)
for ``ttl`` seconds, and at most ``capacity`` responses are kept: the oldest goes first. Nothing
is written to disk; a restart forgets them all (a request that names one then gets a 400).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from surfaces.chat import Message

CAPACITY = 1024
TTL_SECONDS = 3600.0


class ResponseStore:
    def __init__(self, *, capacity: int = CAPACITY, ttl: float = TTL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.capacity = capacity
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[float, tuple[Message, ...]]] = OrderedDict()

    def put(self, response_id: str, conversation: Sequence[Message]) -> None:
        with self._lock:
            self._expire()
            self._items[response_id] = (self._clock() + self.ttl, tuple(conversation))
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def get(self, response_id: str) -> tuple[Message, ...] | None:
        with self._lock:
            self._expire()
            found = self._items.get(response_id)
            return found[1] if found else None

    def describe(self) -> str:
        return f"in memory for {self.ttl / 60:g} minutes, at most {self.capacity:,} of them"

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._items)

    def _expire(self) -> None:
        now = self._clock()
        while self._items:
            key, (expires, _) = next(iter(self._items.items()))
            if expires > now:
                return
            del self._items[key]
