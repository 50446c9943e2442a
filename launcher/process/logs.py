"""A deployment's log files: the tail shown when something fails, ``logs -f``, and rotation."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path


def tail(path: Path, lines: int = 20, max_bytes: int = 64 * 1024) -> str:
    """The last ``lines`` lines of a log file (reads at most ``max_bytes`` from its end)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return ""
    text = data.decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def rotate(log: Path) -> None:
    """Keep the previous run's log as ``NAME.1`` (one generation)."""
    if log.exists():
        os.replace(log, log.with_name(log.name + ".1"))


def follow(
    path: Path, *, lines: int, stop: Callable[[], bool], sleep: Callable[[float], None] = time.sleep
) -> Iterator[str]:
    """Yield the last ``lines`` lines, then new lines as they are written, until ``stop()``.

    Follows a rotated log (a new file at the same path) like ``tail -F``.
    """
    text = tail(path, lines)
    if text:
        yield text + "\n"
    fh = path.open("r", errors="replace") if path.exists() else None
    if fh is not None:
        fh.seek(0, 2)
    try:
        while not stop():
            chunk = fh.read() if fh is not None else ""
            if chunk:
                yield chunk
                continue
            with contextlib.suppress(FileNotFoundError):
                if fh is None or os.stat(path).st_ino != os.fstat(fh.fileno()).st_ino:
                    if fh is not None:
                        fh.close()
                    fh = path.open("r", errors="replace")
                    continue
            sleep(0.25)
    finally:
        if fh is not None:
            fh.close()
