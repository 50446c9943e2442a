"""Stop strings: where one starts in a reply, and how much of a stream's tail must wait in case one is forming."""

from __future__ import annotations

from collections.abc import Sequence


def find_stop(text: str, stops: Sequence[str]) -> int | None:
    """Index where the earliest stop string starts in ``text``, or None."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def matched_stop(text: str, stops: Sequence[str]) -> tuple[int, str] | None:
    """Where the earliest stop string starts in ``text``, and which one it is (clients such as the
    Anthropic surface report it), or None."""
    found = sorted((i, -len(s), s) for s in stops if (i := text.find(s)) >= 0)
    return (found[0][0], found[0][2]) if found else None


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters of ``text`` could still become a stop string (a stream keeps them back)."""
    keep = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), keep, -1):
            if text.endswith(stop[:k]):
                keep = k
                break
    return keep
