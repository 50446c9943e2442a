"""Foreground supervision (`modelserve run`): keep one deployment answering until told to stop.

- SIGTERM / SIGINT: stop every process gracefully (TERM, bounded wait, KILL) and exit 0. A second
  SIGINT stops at once with SIGKILL. The handlers only record the signal; the loop acts on it.
- A process that dies after readiness: the whole deployment is stopped and started again after
  a backoff (1 s, doubling, at most 60 s). More than ``limit`` failures within ``window``
  seconds: give up and raise RestartsExhausted (exit 16), so systemd's own Restart= policy
  decides what happens next.
- A crash after a stable run (``stable_after`` seconds up) is not part of a crash loop: it is
  restarted after ``backoff_initial`` again, and the failures before that run no longer count.
  A deployment that fails now and then therefore comes back within its load time + 1 s every
  time and never gives up; only crashes without a stable run between them add up to the limit.
- Under systemd (NOTIFY_SOCKET): STATUS= while loading, READY=1 only once the readiness probes
  pass, WATCHDOG=1 every half WATCHDOG_USEC while the endpoint answers (a hung server stops the
  pings and systemd acts), STOPPING=1 on stop.

The deployment is a :class:`Target`; the clock, sleeping and signals are injected, so tests run
whole restart histories against scripted targets in milliseconds.
"""

from __future__ import annotations

import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Protocol

from launcher.core.errors import RestartsExhausted, StartupCancelled
from launcher.process.notify import Notifier

Report = Callable[[str], None]


class Target(Protocol):
    """One deployment as the supervisor drives it."""

    name: str
    base_url: str
    stop_timeout: float

    def start(self, *, report: Report, cancelled: Callable[[], bool]) -> float:
        """Start every process and wait until the probes pass; seconds until ready. Raises
        StartupCancelled when ``cancelled()`` turns true, a ModelserveError when it fails."""
        ...

    def exited(self) -> tuple[str, int] | None:
        """(role, exit code) of a process that has exited, else None."""
        ...

    def healthy(self) -> bool:
        """The cheap readiness probes pass (no token generation)."""
        ...

    def stop(self, *, timeout: float, interrupt: Callable[[], bool] | None = None) -> None: ...

    def note(self, *, status: str, restarts: int, last_exit: str | None) -> None:
        """Persist what `modelserve status` shows about this run."""
        ...

    def forget(self) -> None:
        """Remove the deployment's record (after its processes are stopped)."""
        ...


@dataclass(frozen=True)
class RestartPolicy:
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    limit: int = 5  # failures within `window`, with no stable run between them, before giving up
    window: float = 300.0
    stable_after: float = 60.0  # a run this long resets the backoff and forgets earlier failures


@dataclass
class Signals:
    """Signals received, recorded by the handlers and acted on by the loop."""

    received: list[int] = field(default_factory=list)

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)

    def on_signal(self, signum: int, frame: FrameType | None = None) -> None:
        self.received.append(signum)

    def stop_requested(self) -> bool:
        return bool(self.received)

    def forced(self) -> bool:
        return self.received.count(signal.SIGINT) >= 2


def describe_exit(role: str, code: int) -> str:
    """Why a process ended, for `status` and the log: Popen's negative code is a signal."""
    if code < 0:
        try:
            how = signal.Signals(-code).name
        except ValueError:
            how = f"signal {-code}"
        return f"the {role} process was killed by {how}"
    return f"the {role} process exited with code {code}"


class Supervisor:
    def __init__(
        self,
        target: Target,
        *,
        policy: RestartPolicy,
        notifier: Notifier,
        signals: Signals,
        report: Report,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        poll_interval: float = 0.5,
    ) -> None:
        self.target = target
        self.policy = policy
        self.notifier = notifier
        self.signals = signals
        self.report = report
        self.clock = clock
        self.sleep = sleep
        self.poll_interval = poll_interval
        self.restarts = 0
        self.failures: deque[float] = deque()
        self.last_exit: str | None = None
        self._shut_down = False

    # -- the first start ------------------------------------------------------------------------

    def start(self) -> float | None:
        """Start and wait until ready: the seconds it took, or None when a signal stopped it
        (everything is stopped and forgotten then). On failure everything is stopped and
        forgotten, and the error propagates."""
        try:
            return self._start()
        except StartupCancelled:
            self.shutdown("stopped while starting")
            return None
        except BaseException:
            self.shutdown("failed to start")
            raise

    def announce_ready(self, ready: float) -> None:
        self.notifier.ready(f"serving {self.target.base_url} (ready after {ready:.0f} s)")
        self.report(f"ready: {self.target.name} answered after {ready:.1f} s; supervising (Ctrl-C stops)")

    def _start(self) -> float:
        started_at = self.clock()
        last_status = [0.0]

        def report(line: str) -> None:
            self.report(line)
            # STATUS= for `systemctl status`, at most every 5 s.
            now = self.clock()
            if now - last_status[0] >= 5:
                last_status[0] = now
                self.notifier.status(f"loading model... {now - started_at:.0f} s")

        self.notifier.status("starting")
        ready = self.target.start(report=report, cancelled=self.signals.stop_requested)
        self.target.note(status="ready", restarts=self.restarts, last_exit=self.last_exit)
        return ready

    # -- supervision ----------------------------------------------------------------------------

    def supervise(self) -> int:
        """Watch until a signal (exit code 0) or until restarts are exhausted (raises)."""
        try:
            return self._supervise()
        except BaseException:
            self.shutdown("stopping after an error")
            raise

    def _supervise(self) -> int:
        backoff = self.policy.backoff_initial
        up_since = self.clock()
        watchdog_every = self.notifier.watchdog_interval
        next_ping = self.clock()
        while True:
            if self.signals.stop_requested():
                self.shutdown("stopping")
                return 0
            dead = self.target.exited()
            if dead is not None:
                self.last_exit = describe_exit(*dead)
                if self.clock() - up_since >= self.policy.stable_after:
                    # It served for a while: whatever loop came before is over. Forgetting those
                    # failures (not only waiting for the window) keeps a deployment that crashes
                    # once in a long while from ever reaching the limit, whatever the numbers.
                    backoff = self.policy.backoff_initial
                    self.failures.clear()
                used = self._restart(backoff)
                if used is None:
                    return 0  # a signal arrived during the backoff or the restart
                backoff = min(used * 2, self.policy.backoff_max)
                up_since = next_ping = self.clock()
                continue
            if watchdog_every is not None and self.clock() >= next_ping:
                # Ping only while the endpoint really answers: a hung server must stop the pings.
                if self.target.healthy():
                    self.notifier.watchdog()
                next_ping = self.clock() + watchdog_every
            self.sleep(self.poll_interval)

    def _count_failure(self) -> None:
        now = self.clock()
        self.failures.append(now)
        while self.failures and now - self.failures[0] > self.policy.window:
            self.failures.popleft()
        self.restarts += 1
        self.target.note(status="restarting", restarts=self.restarts, last_exit=self.last_exit)
        if len(self.failures) > self.policy.limit:
            why = f"{self.last_exit}; {len(self.failures)} failures within {self.policy.window:.0f} s: giving up"
            self.report(why)
            self.shutdown(why)
            raise RestartsExhausted(why, "read `modelserve logs`; systemd's Restart= policy applies from here")

    def _restart(self, backoff: float) -> float | None:
        """Stop the rest of the deployment, wait ``backoff``, start again; a failed start counts
        as one more failure and backs off further. Returns the backoff the successful start came
        after; None when a signal stopped it instead."""
        while True:
            self._count_failure()
            self.report(f"{self.last_exit}; restart {self.restarts} in {backoff:.0f} s")
            self.notifier.status(f"{self.last_exit}; restarting in {backoff:.0f} s (restart {self.restarts})")
            self.target.stop(timeout=self.target.stop_timeout)
            if not self._wait(backoff):
                self.shutdown("stopping")
                return None
            try:
                ready = self._start()
            except StartupCancelled:
                self.shutdown("stopping")
                return None
            except Exception as exc:
                self.last_exit = f"restart failed: {str(exc).splitlines()[0]}"
                backoff = min(backoff * 2, self.policy.backoff_max)
                continue
            self.notifier.status(f"serving {self.target.base_url} (restarted after {ready:.0f} s)")
            return backoff

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless a stop is requested first (then False)."""
        deadline = self.clock() + seconds
        while self.clock() < deadline:
            if self.signals.stop_requested():
                return False
            self.sleep(min(0.1, max(0.0, deadline - self.clock())))
        return not self.signals.stop_requested()

    def shutdown(self, status: str) -> None:
        """Stop everything and forget the record, once (later calls do nothing)."""
        if self._shut_down:
            return  # once: the reason given first (e.g. "giving up") is the one systemd shows
        self._shut_down = True
        self.notifier.stopping(status)
        timeout = 0.5 if self.signals.forced() else self.target.stop_timeout
        self.target.stop(timeout=timeout, interrupt=self.signals.forced)
        self.target.forget()
