"""`modelserve run`: the same start as `up`, then supervision in the foreground
(``process.supervise``), which is what systemd units run."""

from __future__ import annotations

import os
from collections.abc import Callable

from launcher.core.deployment_spec import LoadedSpec
from launcher.lifecycle import up as starting
from launcher.process.groups import ProcessGroups, Started
from launcher.process.notify import Notifier
from launcher.process.readiness import check_all
from launcher.process.supervise import Report, RestartPolicy, Signals, Supervisor
from launcher.store import records


class RecordedTarget:
    """What every supervised target shares: its processes so far (``started``), its record (which
    `status` reads and whose probes say whether it is healthy), and the groups that stop it."""

    def __init__(self, record: records.DeploymentRecord, started: list[Started], groups: ProcessGroups,
                 stop_timeout: float) -> None:  # fmt: skip
        self.record = record
        self.started = started  # the session's own list: starts append to it
        self.groups = groups
        self.name = record.name
        self.base_url = record.base_url
        self.stop_timeout = stop_timeout

    def exited(self) -> tuple[str, int] | None:
        return next(((s.role, code) for s in self.started if (code := s.poll()) is not None), None)

    def healthy(self) -> bool:
        return check_all(self.record.readiness_probes(cheap=True), timeout=5.0).ok

    def stop(self, *, timeout: float, interrupt: Callable[[], bool] | None = None) -> None:
        if self.started:
            self.groups.stop([s.record() for s in self.started], marker=self.record.marker, timeout=timeout,
                             interrupt=interrupt)  # fmt: skip
            self.started.clear()

    def note(self, *, status: str, restarts: int, last_exit: str | None) -> None:
        self.record.status, self.record.restarts, self.record.last_exit = status, restarts, last_exit
        records.save(self.record)

    def forget(self) -> None:
        records.remove(self.name)


class SessionTarget(RecordedTarget):
    """A started deployment session, as the supervisor drives it."""

    def __init__(self, session: starting.Session, groups: ProcessGroups) -> None:
        super().__init__(session.record, session.started, groups, session.dep.stop_timeout)
        self.session = session

    def start(self, *, report: Report, cancelled: Callable[[], bool]) -> float:
        ready = starting.start_processes(self.session, self.groups, report=report, cancelled=cancelled)
        self.record.ready_seconds = round(ready, 2)
        return ready


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
