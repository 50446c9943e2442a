"""Readiness: the server answers the way a client will use it, within a deadline.

"Alive" is never enough: each probe (a backend's :class:`~launcher.core.probe.Probe`) makes the
request a real client makes. ``wait_until_ready`` polls the probes, checks every child on every
turn (so a crash is reported within one interval, with its exit code and the tail of its log),
and on timeout says how long it waited and the last error it saw. An answer waiting cannot change
(a key demanded or refused, a route the server does not have) stops the wait at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from launcher.core.errors import ReadinessRefused, ReadinessTimeout, StartupCancelled, StartupFailed
from launcher.core.probe import Probe, ProbeResult
from launcher.process.logs import tail


class Watched(Protocol):
    """A started child: ``poll()`` returns its exit code once it has exited, else None."""

    role: str
    log_path: Path

    def poll(self) -> int | None: ...


def check_all(probes: Sequence[Probe], timeout: float = 5.0) -> ProbeResult:
    """All probes in order; the first failure is the result."""
    last = ProbeResult(True, "no probes")
    for probe in probes:
        last = probe.check(timeout)
        if not last.ok:
            return last
    return last


def _exited(watched: Sequence[Watched], waited: float) -> StartupFailed | None:
    for child in watched:
        code = child.poll()
        if code is not None:
            return StartupFailed(
                f"the {child.role} process exited with code {code} while starting "
                f"(after {waited:.1f} s); full log: {child.log_path}",
                "read the log above; `modelserve logs NAME` shows more once a deployment runs",
                returncode=code,
                log_tail=tail(child.log_path),
            )
    return None


def wait_until_ready(
    probes: Sequence[Probe],
    watched: Sequence[Watched],
    *,
    timeout: float,
    interval: float = 0.2,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_progress: Callable[[float, str], None] | None = None,
    progress_every: float = 10.0,
    cancelled: Callable[[], bool] | None = None,
) -> float:
    """Poll until every probe passes; return the seconds it took.

    Raises StartupFailed as soon as a watched child has exited, ReadinessRefused as soon as a probe
    gets an answer waiting cannot change, ReadinessTimeout at the deadline, StartupCancelled when
    ``cancelled()`` turns true (a signal arrived while waiting).
    """
    start = clock()
    deadline = start + timeout
    last = ProbeResult(False, "no probe has run yet")
    next_report = start + progress_every
    pending = list(probes)
    while True:
        if cancelled is not None and cancelled():
            raise StartupCancelled(f"stopped while waiting for readiness ({clock() - start:.1f} s)")
        failure = _exited(watched, clock() - start)
        if failure is not None:
            raise failure
        now = clock()
        if now >= deadline:
            logs = [c.log_path for c in watched]
            raise ReadinessTimeout(
                f"not ready after {timeout:.0f} s: {last.detail}",
                f"raise --timeout (the engine may still be loading), or read the log: {', '.join(map(str, logs))}",
                log_tail=tail(watched[-1].log_path, 10) if watched else "",
            )
        # Each request gets what is left of the deadline, at most 30 s (a 1-token completion on
        # a loaded CPU model takes well under a second; the rest is margin for a busy machine).
        per_request = max(0.5, min(30.0, deadline - now))
        while pending:
            last = pending[0].check(per_request)
            if not last.ok and last.final:
                raise ReadinessRefused(
                    f"{last.detail} (after {clock() - start:.1f} s; waiting would not change this answer)",
                    last.fix or "read the server's log: `modelserve logs NAME`",
                    log_tail=tail(watched[-1].log_path, 10) if watched else "",
                )
            if not last.ok:
                break
            pending.pop(0)
        if not pending:
            return clock() - start
        if on_progress is not None and clock() >= next_report:
            on_progress(clock() - start, last.detail)
            next_report += progress_every
        sleep(interval)
