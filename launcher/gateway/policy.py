"""Which member to unload: pure decisions over a snapshot, so they are tested with a fake clock.

A member may be unloaded only when it is loaded, has nothing in flight and nobody waiting for
it. The least recently used one goes first (llama-swap and Ollama do the same).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Snapshot:
    name: str
    state: str  # stopped | starting | ready | stopping
    in_flight: int
    waiting: int
    last_used: float  # clock seconds

    @property
    def loaded(self) -> bool:
        return self.state in ("starting", "ready")

    @property
    def idle(self) -> bool:
        return self.state == "ready" and self.in_flight == 0 and self.waiting == 0


def needs_room(members: Iterable[Snapshot], newcomer: str, max_loaded: int) -> bool:
    """True when loading ``newcomer`` would exceed ``max_loaded`` (0: no limit)."""
    if not max_loaded:
        return False
    return sum(1 for m in members if m.loaded and m.name != newcomer) >= max_loaded


def victim(members: Iterable[Snapshot], newcomer: str) -> str | None:
    """The least recently used idle member other than ``newcomer``, or None when all are busy."""
    idle = [m for m in members if m.idle and m.name != newcomer]
    return min(idle, key=lambda m: m.last_used).name if idle else None


def expired(members: Iterable[Snapshot], now: float, idle_ttl: float) -> list[str]:
    """Members idle for at least ``idle_ttl`` seconds (0: never)."""
    if not idle_ttl:
        return []
    return [m.name for m in members if m.idle and now - m.last_used >= idle_ttl]
