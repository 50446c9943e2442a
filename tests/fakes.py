"""The fakes every timing test uses: a clock that moves only when told, and a process table
whose processes exit when the clock says so.

Launcher code that waits takes its clock and sleep as parameters (``clock=``, ``sleep=``:
readiness, supervision, process-group stops, the gateway's pool) and its processes through a
``table=`` (launcher.process.table); tests hand it these, so a restart history of minutes runs
in milliseconds and every timing assertion is exact, never a race with a real clock.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field

from launcher.store.records import ProcessRecord


class FakeClock:
    """``time.monotonic`` (call it) and ``time.sleep`` (``.sleep``) on a clock of its own.

    Time moves only when the code under test sleeps or the test calls :meth:`advance`; actions
    scheduled with :meth:`call_at` (a signal arriving, a process dying) run once the clock
    passes their time, as if they happened during the sleep.
    """

    MIN_STEP = 1e-3  # a sleep always advances: a loop that sleeps 0 reaches its deadline instead of hanging

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.sleeps: list[float] = []  # what the code asked for, in order
        self._due: list[tuple[float, Callable[[], None]]] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"sleep({seconds}): a negative sleep is a bug in the caller's deadline arithmetic")
        self.sleeps.append(seconds)
        self.advance(max(seconds, self.MIN_STEP))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for when, action in [d for d in self._due if d[0] <= self.now]:
            self._due.remove((when, action))
            action()

    def call_at(self, when: float, action: Callable[[], None]) -> None:
        """Run ``action`` once the clock reaches ``when``."""
        self._due.append((when, action))


@dataclass
class FakeProcessTable:
    """The OS as launcher.process.groups sees it (``table=``): processes that exit
    ``term_delay[pid]`` seconds after SIGTERM (None: never), at once on SIGKILL; ``groups``
    maps each pid to its process group. ``sent`` records every signal, in order."""

    clock: FakeClock
    term_delay: dict[int, float | None]
    groups: dict[int, int]
    sent: list[tuple[str, int, int]] = field(default_factory=list)
    gone_at: dict[int, float] = field(default_factory=dict)

    def _alive(self, pid: int) -> bool:
        return pid in self.term_delay and self.clock.now < self.gone_at.get(pid, float("inf"))

    def members(self, processes: object, marker: str) -> list[int]:
        return [pid for pid in self.term_delay if self._alive(pid)]

    def verified(self, rec: ProcessRecord) -> bool:
        return self._alive(rec.pid)

    def create_time(self, pid: int) -> float:
        return 0.0

    def group_of(self, pid: int) -> int | None:
        return self.groups.get(pid) if self._alive(pid) else None

    def _hit(self, pid: int, sig: signal.Signals) -> None:
        if not self._alive(pid):
            return
        if sig == signal.SIGKILL:
            self.gone_at[pid] = self.clock.now
        elif (delay := self.term_delay[pid]) is not None:
            self.gone_at.setdefault(pid, self.clock.now + delay)

    def send(self, pid: int, sig: signal.Signals) -> None:
        self.sent.append(("pid", pid, sig))
        self._hit(pid, sig)

    def send_group(self, pgid: int, sig: signal.Signals) -> None:
        self.sent.append(("group", pgid, sig))
        for pid, group in self.groups.items():
            if group == pgid:
                self._hit(pid, sig)

    def reap(self, pids: object) -> None:
        return None


async def settle(check: Callable[[], bool] | None = None, *, turns: int = 200) -> None:
    """Let the event loop run the other tasks, without a clock: until ``check()`` holds (an
    AssertionError after ``turns`` loop turns), or for ``turns`` turns when there is nothing to
    wait for (what a test then asserts is that nothing moved)."""
    import asyncio

    for _ in range(turns):
        if check is not None and check():
            return
        await asyncio.sleep(0)
    if check is not None and not check():
        raise AssertionError(f"still not true after {turns} turns of the event loop")
