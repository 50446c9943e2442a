"""Writing files so that no reader ever sees half of one, and locks that serialise writers.

One lock style for everything: ``flock`` on a file or a folder. A folder can be locked (filelock
only locks files), which is how agent config files in a user's project are guarded without
leaving a lock file beside them; the lock goes with the process, so a crash never leaves a stale
one behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path


class LockTimeout(TimeoutError):
    """Another process held the lock for longer than the caller was willing to wait."""


@contextlib.contextmanager
def locked(
    path: Path,
    *,
    timeout: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a folder, or a lock file created if missing).

    ``timeout`` None waits as long as it takes; otherwise LockTimeout after ``timeout`` seconds.
    """
    flags = os.O_RDONLY | os.O_DIRECTORY if path.is_dir() else os.O_RDWR | os.O_CREAT
    fd = os.open(path, flags, 0o600)
    try:
        if timeout is None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            deadline = clock() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if clock() >= deadline:
                        raise LockTimeout(f"{path} is locked by another process") from None
                    sleep(min(0.05, max(0.0, deadline - clock())))
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_atomic(path: Path, data: str | bytes, *, mode: int = 0o644, keep_mode: bool = True) -> None:
    """Replace ``path`` with ``data``, complete or not at all (temp file beside it, fsync, rename).

    ``mode`` is the new file's mode; with ``keep_mode`` an existing file keeps its own.
    """
    if keep_mode:
        with contextlib.suppress(FileNotFoundError):
            mode = path.stat().st_mode & 0o777
    tmp = _write_temp(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def create_new(path: Path, data: str | bytes, *, mode: int = 0o644) -> None:
    """Create ``path`` holding ``data``, complete or not at all; FileExistsError if it exists."""
    tmp = _write_temp(path, data, mode)
    try:
        os.link(tmp, path)  # atomic, and fails instead of replacing an existing file
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _write_temp(path: Path, data: str | bytes, mode: int) -> str:
    import tempfile  # here: readers of records (`status`) never write, and tempfile costs them 3 ms

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp
