"""Server-sent events: writing one, and reading a stream of them as it arrives in pieces."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


def frame(data: Any, *, event: str | None = None) -> str:
    """``event: NAME`` (where the protocol names events) and ``data: JSON``, then a blank line."""
    body = f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"
    return f"event: {event}\n{body}" if event else body


@dataclass(frozen=True)
class Event:
    data: str
    event: str | None = None


class Reader:
    """Bytes in, events out: a chunk may end mid-line or hold many events (the HTML spec's rules,
    minus ``id`` and ``retry``, which no surface here sends)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._event: str | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        self._buffer += chunk
        out: list[Event] = []
        while True:
            cut = self._buffer.find(b"\n")
            if cut < 0:
                return out
            line = self._buffer[:cut].rstrip(b"\r").decode("utf-8", errors="replace")
            self._buffer = self._buffer[cut + 1 :]
            if not line:
                if self._data:
                    out.append(Event("\n".join(self._data), self._event))
                self._data, self._event = [], None
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                self._data.append(value)
            elif name == "event":
                self._event = value
