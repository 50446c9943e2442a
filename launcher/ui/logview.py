"""A deployment's log, followed for the page: the last lines, then new ones as they are written
(a rotated log, a new file at the same path, is followed like ``tail -F``), each line with every
key the dashboard knows replaced by ``***``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

POLL_S = 0.25  # how often a followed log is read again
MAX_CHUNK = 256 * 1024  # bytes read per poll: a log that floods is sent in pieces


def redactor(secrets: Callable[[], set[str]]) -> Callable[[str], str]:
    def redact(text: str) -> str:
        for secret in secrets():
            if secret:
                text = text.replace(secret, "***")
        return text

    return redact


async def follow(path: Path, *, lines: int, redact: Callable[[str], str],
                 poll: float = POLL_S) -> AsyncIterator[list[str]]:  # fmt: skip
    """Batches of lines: the last ``lines`` first, then what is appended. Ends when the consumer
    stops iterating (the page went away)."""
    inode, offset = _position(path)
    start = max(0, offset - max(64 * 1024, lines * 400))
    data = _read(path, start, offset - start)
    yield [redact(line) for line in data.decode(errors="replace").splitlines()[-lines:]]
    pending = ""
    while True:
        await asyncio.sleep(poll)
        now_inode, size = _position(path)
        if now_inode != inode or size < offset:  # rotated or truncated: start at the top of the new file
            inode, offset, pending = now_inode, 0, ""
        if size <= offset:
            continue
        data = _read(path, offset, MAX_CHUNK)
        offset += len(data)
        text = pending + data.decode(errors="replace")
        complete, _, pending = text.rpartition("\n")
        if complete:
            yield [redact(line) for line in complete.split("\n")]


def _position(path: Path) -> tuple[int | None, int]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None, 0
    return st.st_ino, st.st_size


def _read(path: Path, offset: int, size: int) -> bytes:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read(size)
    except OSError:
        return b""
