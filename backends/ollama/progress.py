"""Ollama's NDJSON status objects (pull, create) -> a few readable progress lines."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def human_bytes(n: int) -> str:
    """Decimal units, the way Ollama prints sizes (3.8 GB, 68 B)."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"  # not reached


class PullProgress:
    """Each status once, and per layer only its 0/25/50/75/100 % marks with its size: a real pull
    sends an update every few hundred kilobytes, which is noise in a terminal or a CI log."""

    STEP = 25

    def __init__(self) -> None:
        self._last_status: str | None = None
        self._marks: dict[str, int] = {}

    def feed(self, event: Mapping[str, Any]) -> list[str]:
        status = str(event.get("status") or "")
        digest = event.get("digest")
        total = event.get("total")
        if digest and isinstance(total, int) and total > 0:
            completed = event.get("completed")
            done = completed if isinstance(completed, int) else 0
            mark = min(100, done * 100 // total) // self.STEP * self.STEP
            key = str(digest)
            if mark <= self._marks.get(key, -1):
                return []
            self._marks[key] = mark
            label = status or f"pulling {short_digest(key)}"
            return [f"{label} {mark:3d}% of {human_bytes(total)}"]
        if not status or status == self._last_status:
            return []
        self._last_status = status
        return [status]


def short_digest(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def progress_lines(events: list[Mapping[str, Any]]) -> list[str]:
    """The lines a whole stream renders to (what `up` prints, without the indentation)."""
    progress = PullProgress()
    return [line for event in events for line in progress.feed(event)]
