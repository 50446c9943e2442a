"""Foreground supervision and process-group stops, driven by a fake clock and scripted
processes: whole restart histories in milliseconds (the real ones: tests/integration)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from launcher.core.errors import RestartsExhausted, StartupCancelled, StartupFailed
from launcher.process.groups import ProcessGroups
from launcher.process.notify import Notifier
from launcher.process.supervise import Report, RestartPolicy, Signals, Supervisor, describe_exit
from launcher.store.records import ProcessRecord
from tests.fakes import FakeClock, FakeProcessTable


@dataclass
class Target:
    """A deployment whose process runs ``lives[i]`` seconds after its i-th start (the last value
    repeats); ``failing_starts``: start numbers (1-based) that fail."""

    clock: FakeClock
    lives: list[float]
    load: float = 2.0
    failing_starts: set[int] = field(default_factory=set)
    name: str = "t"
    base_url: str = "http://127.0.0.1:1"
    stop_timeout: float = 10.0
    events: list[tuple[str, float]] = field(default_factory=list)
    stops: list[tuple[float, bool]] = field(default_factory=list)  # (timeout, interrupt() at the time)
    notes: list[tuple[str, int]] = field(default_factory=list)
    starts: int = 0
    died_at: float | None = None

    def start(self, *, report: Report, cancelled: Callable[[], bool]) -> float:
        self.starts += 1
        self.clock.now += self.load
        self.events.append(("start", self.clock.now))
        if self.starts in self.failing_starts:
            raise StartupFailed("the server process exited with code 1 while starting")
        life = self.lives[min(self.starts - 1, len(self.lives) - 1)]
        self.died_at = self.clock.now + life
        return self.load

    def exited(self) -> tuple[str, int] | None:
        return ("server", 3) if self.died_at is not None and self.clock.now >= self.died_at else None

    def healthy(self) -> bool:
        return self.exited() is None

    def stop(self, *, timeout: float, interrupt: Callable[[], bool] | None = None) -> None:
        self.stops.append((timeout, bool(interrupt and interrupt())))
        self.events.append(("stop", self.clock.now))
        self.died_at = None

    def note(self, *, status: str, restarts: int, last_exit: str | None) -> None:
        self.notes.append((status, restarts))

    def forget(self) -> None:
        self.events.append(("forget", self.clock.now))


def supervisor(target: Target, clock: FakeClock, signals: Signals | None = None, **policy: float) -> Supervisor:
    notifier = Notifier({"NOTIFY_SOCKET": "/nonexistent/notify"})  # records what it would send
    return Supervisor(target, policy=RestartPolicy(**policy), notifier=notifier, signals=signals or Signals(),  # type: ignore[arg-type]
                      report=lambda _: None, clock=clock, sleep=clock.sleep)  # fmt: skip


def backoffs(target: Target) -> list[float]:
    """Seconds between each stop after a crash and the next start (minus the load time)."""
    out, last_stop = [], None
    for kind, when in target.events:
        if kind == "stop":
            last_stop = when
        elif kind == "start" and last_stop is not None:
            out.append(round(when - target.load - last_stop, 1))
            last_stop = None
    return out


def stop_after(clock: FakeClock, signals: Signals, when: float, signum: int = signal.SIGTERM) -> None:
    clock.call_at(when, lambda: signals.on_signal(signum))


def test_backoff_doubles_up_to_the_cap() -> None:
    clock, signals = FakeClock(), Signals()
    target = Target(clock, lives=[1.0])
    sup = supervisor(target, clock, signals, limit=100, window=1e9, backoff_max=8)
    assert sup.start() == 2.0
    stop_after(clock, signals, 60)
    assert sup.supervise() == 0
    assert backoffs(target)[:6] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert target.events[-1][0] == "forget"


def test_a_stable_run_resets_the_backoff() -> None:
    clock, signals = FakeClock(), Signals()
    target = Target(clock, lives=[1.0, 1.0, 1.0, 100.0, 1.0])
    sup = supervisor(target, clock, signals, limit=100, window=1e9, stable_after=60)
    sup.start()
    stop_after(clock, signals, 200)
    sup.supervise()
    assert backoffs(target)[:5] == [1.0, 2.0, 4.0, 1.0, 2.0]  # the 100 s run reset it


def test_too_many_failures_in_the_window_give_up_and_leave_nothing() -> None:
    clock = FakeClock()
    target = Target(clock, lives=[0.5])
    sup = supervisor(target, clock, limit=3, window=300)
    sup.start()
    with pytest.raises(RestartsExhausted, match="4 failures within 300 s: giving up"):
        sup.supervise()
    assert target.starts == 4  # the first start and three restarts
    assert target.events[-2:] == [("stop", clock.now), ("forget", clock.now)]
    assert "giving up" in sup.notifier.sent[-1] and "STOPPING=1" in sup.notifier.sent[-1]


def test_failures_outside_the_window_do_not_count() -> None:
    clock, signals = FakeClock(), Signals()
    target = Target(clock, lives=[200.0])  # one crash every ~200 s, with a 60 s window
    sup = supervisor(target, clock, signals, limit=1, window=60)
    sup.start()
    stop_after(clock, signals, 2000)
    assert sup.supervise() == 0
    assert target.starts > 5  # never gave up


def test_after_a_stable_run_a_crash_is_back_within_load_time_plus_backoff_initial() -> None:
    clock, signals = FakeClock(), Signals()
    target = Target(clock, lives=[1.0, 1.0, 3600.0, 1e9])  # two quick crashes push the backoff to 4 s
    sup = supervisor(target, clock, signals)  # the policy `modelserve run` uses
    sup.start()
    stop_after(clock, signals, 4000)
    assert sup.supervise() == 0
    assert backoffs(target) == [1.0, 2.0, 1.0]
    starts = [when for kind, when in target.events if kind == "start"]
    crashed_at = starts[2] + 3600.0
    # Noticed within one poll, then backoff_initial, then the load: nothing else in between.
    policy = RestartPolicy()
    assert policy.backoff_initial <= 1.0
    assert starts[3] - crashed_at <= target.load + policy.backoff_initial + sup.poll_interval + 1e-6


def test_quick_crashes_still_back_off_and_give_up_with_exit_16() -> None:
    clock = FakeClock()
    target = Target(clock, lives=[5.0])  # never up long enough to count as stable
    sup = supervisor(target, clock)
    sup.start()
    with pytest.raises(RestartsExhausted, match="6 failures within 300 s: giving up") as err:
        sup.supervise()
    assert err.value.exit_code == 16
    assert backoffs(target) == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert target.starts == 6
    assert target.events[-1][0] == "forget"


def test_a_stable_run_forgets_the_failures_before_it() -> None:
    clock, signals = FakeClock(), Signals()
    # Two quick crashes, a stable run, and again: twelve failures in ten minutes, yet never more
    # than three without a stable run between them. Without forgetting, the fourth gives up.
    target = Target(clock, lives=[1.0, 1.0, 100.0] * 4 + [1e9])
    sup = supervisor(target, clock, signals, limit=3, window=1e9)
    sup.start()
    stop_after(clock, signals, 2000)
    assert sup.supervise() == 0
    assert sup.restarts == 12
    # Each crash after a stable run starts over at 1 s; the quick ones after it double.
    assert backoffs(target) == [1.0, 2.0] + [1.0, 2.0, 4.0] * 3 + [1.0]


def test_a_deployment_failing_every_few_minutes_never_gives_up() -> None:
    clock, signals = FakeClock(), Signals()
    target = Target(clock, lives=[170.0])
    sup = supervisor(target, clock, signals)
    sup.start()
    stop_after(clock, signals, 6 * 3600)
    assert sup.supervise() == 0
    assert target.starts > 6 * 3600 / 180  # it kept coming back all along
    assert set(backoffs(target)) == {1.0}  # and each time as fast as the first
    assert sup.last_exit == "the server process exited with code 3"


def test_a_signal_death_is_named_in_the_last_exit() -> None:
    assert describe_exit("worker", -signal.SIGKILL) == "the worker process was killed by SIGKILL"
    assert describe_exit("api", 2) == "the api process exited with code 2"
    assert describe_exit("api", -200) == "the api process was killed by signal 200"


def test_a_failed_restart_counts_and_backs_off_further() -> None:
    clock, signals = FakeClock(), Signals()
    target = Target(clock, lives=[1.0], failing_starts={2, 3})
    sup = supervisor(target, clock, signals, limit=100, window=1e9)
    sup.start()
    stop_after(clock, signals, 40)
    sup.supervise()
    assert backoffs(target)[:4] == [1.0, 2.0, 4.0, 8.0]
    assert sup.last_exit is not None
    assert [n for n in target.notes if n[0] == "restarting"][:3] == [("restarting", 1), ("restarting", 2),
                                                                      ("restarting", 3)]  # fmt: skip


def test_a_stop_during_the_backoff_stops_without_restarting() -> None:
    clock, signals = FakeClock(), Signals()
    target = Target(clock, lives=[1.0])
    sup = supervisor(target, clock, signals, backoff_initial=30)
    sup.start()
    stop_after(clock, signals, 10)  # 1 s after load + 1 s of life: in the middle of the 30 s backoff
    assert sup.supervise() == 0
    assert target.starts == 1
    assert [e[0] for e in target.events] == ["start", "stop", "stop", "forget"]
    assert clock.now < 12


def test_a_second_ctrl_c_kills_at_once() -> None:
    clock, signals = FakeClock(), Signals()
    target = Target(clock, lives=[1e9])
    sup = supervisor(target, clock, signals)
    sup.start()
    stop_after(clock, signals, 5, signal.SIGINT)
    stop_after(clock, signals, 5, signal.SIGINT)
    assert sup.supervise() == 0
    assert target.stops == [(0.5, True)]  # short timeout, and the wait is cut short: SIGKILL


def test_one_ctrl_c_stops_gracefully() -> None:
    clock, signals = FakeClock(), Signals()
    target = Target(clock, lives=[1e9])
    sup = supervisor(target, clock, signals)
    sup.start()
    stop_after(clock, signals, 5, signal.SIGINT)
    assert sup.supervise() == 0
    assert target.stops == [(10.0, False)]


def test_a_signal_while_starting_stops_and_forgets() -> None:
    clock, signals = FakeClock(), Signals()
    signals.on_signal(signal.SIGTERM)

    class Slow(Target):
        def start(self, *, report: Report, cancelled: Callable[[], bool]) -> float:
            if cancelled():
                raise StartupCancelled("stopped while waiting for readiness")
            return super().start(report=report, cancelled=cancelled)

    target = Slow(clock, lives=[1e9])
    assert supervisor(target, clock, signals).start() is None
    assert [e[0] for e in target.events] == ["stop", "forget"]


# ---- ProcessGroups.stop with a scripted process table ---------------------------------------


RECORDS = [ProcessRecord("server", 100, 100, 0.0, ["srv"], "/l")]


def groups_with(clock: FakeClock, table: FakeProcessTable) -> ProcessGroups:
    return ProcessGroups(table=table, clock=clock, sleep=clock.sleep)


def test_stop_terminates_the_group_and_waits_for_it() -> None:
    clock = FakeClock()
    # 100 is the server; 101 a worker in its group that the recorded pid alone would miss.
    table = FakeProcessTable(clock, {100: 1.0, 101: 2.0}, {100: 100, 101: 100})
    report = groups_with(clock, table).stop(RECORDS, marker="m", timeout=10)
    assert ("group", 100, signal.SIGTERM) in table.sent
    assert sorted(report.terminated) == [100, 101] and report.killed == [] and report.survivors == []
    assert 2.0 <= report.seconds < 2.3


def test_stop_kills_what_ignores_sigterm_after_the_timeout() -> None:
    clock = FakeClock()
    table = FakeProcessTable(clock, {100: None, 101: 0.5}, {100: 100, 101: 100})
    report = groups_with(clock, table).stop(RECORDS, marker="m", timeout=10)
    assert report.killed == [100] and report.terminated == [101] and report.survivors == []
    assert ("group", 100, signal.SIGKILL) in table.sent
    assert 10.0 <= report.seconds < 10.3


def test_an_interrupt_cuts_the_wait_short() -> None:
    clock = FakeClock()
    table = FakeProcessTable(clock, {100: None}, {100: 100})
    report = groups_with(clock, table).stop(RECORDS, marker="m", timeout=10, interrupt=lambda: clock.now > 0.3)
    assert report.killed == [100]
    assert report.seconds < 1.0


def test_nothing_left_is_success_and_signals_nobody() -> None:
    clock = FakeClock()
    table = FakeProcessTable(clock, {}, {})
    report = groups_with(clock, table).stop(RECORDS, marker="m")
    assert report.already_gone and table.sent == []
