"""Run a helper program (pip, the GGUF converter) and show its progress as it goes.

One pipe for both streams (reading two pipes in turn can deadlock when the other fills); the
lines the caller cares about are passed on, the last ones are kept for the error message, and
the child is killed at the deadline even when it has gone quiet.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO


@dataclass(frozen=True)
class ChildResult:
    returncode: int | None  # None: killed at the deadline
    tail: tuple[str, ...]  # the last lines it printed

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    def tail_text(self) -> str:
        return "\n".join(self.tail)


def run_streaming(
    cmd: Sequence[str],
    *,
    timeout: float,
    show: Callable[[str], bool] = lambda line: False,
    progress: Callable[[str], None] = lambda line: None,
    env: Mapping[str, str] | None = None,
    keep: int = 40,
    clock: Callable[[], float] = time.monotonic,
) -> ChildResult:
    """Run ``cmd``; every output line for which ``show(line)`` is true goes to ``progress``."""
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=dict(env) if env is not None else None)  # fmt: skip
    if proc.stdout is None:  # never with stdout=PIPE; narrows the type
        raise RuntimeError("subprocess.Popen returned no stdout pipe")
    try:
        return _follow(proc, proc.stdout, timeout=timeout, show=show, progress=progress, keep=keep, clock=clock)
    except BaseException:  # Ctrl-C, or SIGTERM while `up` converts a model: the helper stops too
        proc.kill()
        proc.wait()
        raise


def _follow(proc: subprocess.Popen[bytes], stdout: IO[bytes], *, timeout: float, show: Callable[[str], bool],
            progress: Callable[[str], None], keep: int, clock: Callable[[], float]) -> ChildResult:  # fmt: skip
    tail: deque[str] = deque(maxlen=keep)
    deadline = clock() + timeout
    pending = b""
    with selectors.DefaultSelector() as sel:
        sel.register(stdout, selectors.EVENT_READ)
        while True:
            left = deadline - clock()
            if left <= 0:
                proc.kill()
                proc.wait()
                return ChildResult(None, tuple(tail))
            if not sel.select(timeout=min(left, 1.0)):
                continue
            chunk = os.read(stdout.fileno(), 65536)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for raw in lines:
                _take(raw, tail, show, progress)
    if pending:
        _take(pending, tail, show, progress)
    stdout.close()
    return ChildResult(proc.wait(), tuple(tail))


def _take(raw: bytes, tail: deque[str], show: Callable[[str], bool], progress: Callable[[str], None]) -> None:
    line = raw.decode(errors="replace").rstrip()
    tail.append(line)
    if show(line):
        progress(line)
