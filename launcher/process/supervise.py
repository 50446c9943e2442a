"""`modelserve run`: the same start as `up`, then supervision in the foreground.

- SIGTERM / SIGINT: stop every process gracefully (TERM, bounded wait, KILL) and exit 0. A second
  SIGINT stops at once with SIGKILL. The handlers only record the signal; the loop acts on it.
- A process that dies after readiness: the whole deployment is stopped and started again after
  a backoff (1 s, doubling, at most 60 s; reset after a stable minute). More than
  ``restart_limit`` failures within ``restart_window`` seconds: give up and exit 16, so
  systemd's own Restart= policy decides what happens next.
- Under systemd (NOTIFY_SOCKET): STATUS= while loading, READY=1 only once the readiness probes
  pass, WATCHDOG=1 every half WATCHDOG_USEC while the endpoint answers (a hung server stops the
  pings and systemd acts), STOPPING=1 on stop.
"""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

from launcher import health, lifecycle, state
from launcher.errors import RestartsExhausted, StartupCancelled
from launcher.notify import Notifier
from launcher.spec import LoadedSpec
from launcher.supervisor import Supervisor

Report = Callable[[str], None]


@dataclass(frozen=True)
class RestartPolicy:
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    limit: int = 5  # failures within `window` before giving up
    window: float = 300.0
    stable_after: float = 60.0  # a run this long resets the backoff


@dataclass
class RunState:
    signals: list[int] = field(default_factory=list)
    restarts: int = 0
    failures: deque[float] = field(default_factory=deque)
    last_exit: str | None = None


class ForegroundRunner:
    def __init__(
        self,
        loaded: LoadedSpec,
        *,
        supervisor: Supervisor | None = None,
        notifier: Notifier | None = None,
        policy: RestartPolicy | None = None,
        report: Report = lifecycle._stderr,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        poll_interval: float = 0.5,
    ) -> None:
        self.loaded = loaded
        self.dep = loaded.deployment
        self.sup = supervisor or Supervisor()
        self.notifier = notifier or Notifier()
        self.policy = policy or RestartPolicy(limit=self.dep.restart_limit, window=self.dep.restart_window)
        self.report = report
        self.clock = clock
        self.sleep = sleep
        self.poll_interval = poll_interval
        self.st = RunState()
        self.session: lifecycle.Session | None = None
        self._shut_down = False

    # -- signals: record only ------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.st.signals.append(signum)

    @property
    def s(self) -> lifecycle.Session:
        if self.session is None:
            raise RuntimeError("no session: run() starts one")
        return self.session

    def _stop_requested(self) -> bool:
        return bool(self.st.signals)

    def _forced(self) -> bool:
        return self.st.signals.count(signal.SIGINT) >= 2

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> int:
        """Start, supervise until a signal, stop. Returns the process exit code."""
        self.install_signal_handlers()
        name = self.dep.deployment_name
        with state.locked(name):
            self.session = lifecycle.begin(self.dep, report=self.report, mode="foreground")
            self.session.record.supervisor_pid = os.getpid()
            try:
                ready = self._start()
                lifecycle.write_clients(self.session)
                state.save(self.s.record)
            except StartupCancelled:
                self._shutdown("stopped while starting")
                return 0
            except BaseException:
                self.notifier.stopping("failed to start")
                lifecycle.abort(self.session, self.sup)
                raise
        self.notifier.ready(f"serving {self.s.record.base_url} (ready after {ready:.0f} s)")
        self.report(f"ready: {name} answered after {ready:.1f} s; supervising (Ctrl-C stops)")
        try:
            return self._supervise()
        except BaseException:
            self._shutdown("stopping after an error")
            raise

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
        ready = lifecycle.start_processes(self.s, self.sup, report=report, cancelled=self._stop_requested)
        record = self.s.record
        record.status, record.ready_seconds = "ready", round(ready, 2)
        record.restarts, record.last_exit = self.st.restarts, self.st.last_exit
        state.save(record)
        return ready

    def _supervise(self) -> int:
        backoff = self.policy.backoff_initial
        up_since = self.clock()
        watchdog_every = self.notifier.watchdog_interval
        next_ping = self.clock()
        while True:
            if self._stop_requested():
                self._shutdown("stopping")
                return 0
            dead = [(s.role, code) for s in self.s.started if (code := s.poll()) is not None]
            if dead:
                role, code = dead[0]
                self.st.last_exit = f"the {role} process exited with code {code}"
                if self.clock() - up_since >= self.policy.stable_after:
                    backoff = self.policy.backoff_initial
                if not self._restart(backoff):
                    return 0  # a signal arrived during the backoff or the restart
                backoff = min(backoff * 2, self.policy.backoff_max)
                up_since = self.clock()
                next_ping = self.clock()
                continue
            if watchdog_every is not None and self.clock() >= next_ping:
                # Ping only while the endpoint really answers: a hung server must stop the pings.
                if health.check_all(lifecycle._probes(self.s.record, cheap=True), timeout=5.0).ok:
                    self.notifier.watchdog()
                next_ping = self.clock() + watchdog_every
            self.sleep(self.poll_interval)

    def _restart(self, backoff: float) -> bool:
        """Stop the rest of the deployment, wait ``backoff``, start again. False: stopped instead."""
        now = self.clock()
        self.st.failures.append(now)
        while self.st.failures and now - self.st.failures[0] > self.policy.window:
            self.st.failures.popleft()
        self.st.restarts += 1
        record = self.s.record
        record.restarts, record.last_exit, record.status = self.st.restarts, self.st.last_exit, "restarting"
        if len(self.st.failures) > self.policy.limit:
            why = (f"{self.st.last_exit}; {len(self.st.failures)} failures within {self.policy.window:.0f} s: "
                   "giving up")  # fmt: skip
            self.report(why)
            self._shutdown(why)
            raise RestartsExhausted(why, "read `modelserve logs`; systemd's Restart= policy applies from here")
        self.report(f"{self.st.last_exit}; restart {self.st.restarts} in {backoff:.0f} s")
        self.notifier.status(f"{self.st.last_exit}; restarting in {backoff:.0f} s (restart {self.st.restarts})")
        self.sup.stop([s.record() for s in self.s.started], marker=record.marker, timeout=self.dep.stop_timeout)
        self.s.started.clear()
        state.save(record)
        deadline = self.clock() + backoff
        while self.clock() < deadline:  # interruptible backoff
            if self._stop_requested():
                self._shutdown("stopping")
                return False
            self.sleep(min(0.1, max(0.0, deadline - self.clock())))
        try:
            ready = self._start()
        except StartupCancelled:
            self._shutdown("stopping")
            return False
        except Exception as exc:  # a failed restart counts as one more failure
            self.st.last_exit = f"restart failed: {str(exc).splitlines()[0]}"
            self.sup.stop([s.record() for s in self.s.started], marker=record.marker, timeout=self.dep.stop_timeout)
            self.s.started.clear()
            return self._restart(min(backoff * 2, self.policy.backoff_max))
        self.notifier.status(f"serving {record.base_url} (restarted after {ready:.0f} s)")
        return True

    def _shutdown(self, status: str) -> None:
        if self.session is None or self._shut_down:
            return  # once: the reason given first (e.g. "giving up") is the one systemd shows
        self._shut_down = True
        self.notifier.stopping(status)
        timeout = 0.5 if self._forced() else self.dep.stop_timeout
        if self.s.started:
            self.sup.stop([s.record() for s in self.s.started], marker=self.s.record.marker,
                          timeout=timeout, interrupt=self._forced)  # fmt: skip
            self.s.started.clear()
        state.remove(self.s.record.name)
