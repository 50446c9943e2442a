"""`modelserve run`: the same start as `up`, then supervision in the foreground
(``process.supervise``), which is what systemd units run."""

from __future__ import annotations

import os
from collections.abc import Callable

from launcher.core.spec import LoadedSpec
from launcher.lifecycle import up as starting
from launcher.process.groups import ProcessGroups
from launcher.process.notify import Notifier
from launcher.process.readiness import check_all
from launcher.process.supervise import Report, RestartPolicy, Signals, Supervisor
from launcher.store import records


class SessionTarget:
    """A started deployment session, as the supervisor drives it."""

    def __init__(self, session: starting.Session, groups: ProcessGroups) -> None:
        self.session = session
        self.groups = groups
        self.name = session.record.name
        self.base_url = session.record.base_url
        self.stop_timeout = session.dep.stop_timeout

    def start(self, *, report: Report, cancelled: Callable[[], bool]) -> float:
        ready = starting.start_processes(self.session, self.groups, report=report, cancelled=cancelled)
        self.session.record.ready_seconds = round(ready, 2)
        return ready

    def exited(self) -> tuple[str, int] | None:
        return next(((s.role, code) for s in self.session.started if (code := s.poll()) is not None), None)

    def healthy(self) -> bool:
        return check_all(self.session.record.readiness_probes(cheap=True), timeout=5.0).ok

    def stop(self, *, timeout: float, interrupt: Callable[[], bool] | None = None) -> None:
        starting.stop_started(self.session, self.groups, timeout=timeout, interrupt=interrupt)

    def note(self, *, status: str, restarts: int, last_exit: str | None) -> None:
        record = self.session.record
        record.status, record.restarts, record.last_exit = status, restarts, last_exit
        records.save(record)

    def forget(self) -> None:
        records.remove(self.name)


def _quiet(msg: str) -> None:
    """The default report sink: the CLI passes one that prints."""


def run(
    loaded: LoadedSpec,
    *,
    report: Report = _quiet,
    groups: ProcessGroups | None = None,
    notifier: Notifier | None = None,
    signals: Signals | None = None,
    poll_interval: float = 0.5,
) -> int:
    """Start, supervise until a signal, stop. Returns the process exit code."""
    dep = loaded.deployment
    groups = groups or ProcessGroups()
    notifier = notifier or Notifier()
    if signals is None:
        signals = Signals()
        signals.install()  # before anything starts: a SIGTERM while loading must stop cleanly
    policy = RestartPolicy(limit=dep.restart_limit, window=dep.restart_window)
    with records.locked(dep.deployment_name):
        session = starting.begin(dep, report=report, mode="foreground")
        session.record.supervisor_pid = os.getpid()
        sup = Supervisor(SessionTarget(session, groups), policy=policy, notifier=notifier, signals=signals,
                         report=report, poll_interval=poll_interval)  # fmt: skip
        ready = sup.start()
        if ready is None:
            return 0
        try:
            starting.write_clients(session)
            records.save(session.record)
        except BaseException:
            sup.shutdown("failed to start")
            raise
    sup.announce_ready(ready)
    return sup.supervise()
