"""`modelserve ui`: the dashboard (launcher.ui) as a process of ours, with a record like a
deployment's, so `status` lists it, `down` stops it and `logs` shows its log. Started detached
and gated on a real request (``GET /api/state`` with its key), or supervised in the foreground
the way `run` supervises a deployment (its systemd unit runs that).

Any address but loopback needs an API key, which reaches the process through its environment.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from backends.probes import HttpOk
from launcher.core.deployment import client_host
from launcher.core.errors import ConfigError
from launcher.core.launch import ProcessSpec
from launcher.core.probe import to_dict
from launcher.lifecycle.run import RecordedTarget
from launcher.lifecycle.up import refuse_if_running
from launcher.process import logs, ports, readiness
from launcher.process.groups import ProcessGroups, Started
from launcher.process.notify import Notifier
from launcher.process.supervise import RestartPolicy, Signals, Supervisor
from launcher.store import paths, records
from launcher.systemd.dashboard_unit import DashboardUnit, render_dashboard_unit
from launcher.systemd.units import File
from launcher.ui import BACKEND, KEY_ENV
from launcher.ui.guard import is_loopback

Report = Callable[[str], None]
NAME = "ui"
PORT = 8090
READY_TIMEOUT = 60.0


def _quiet(msg: str) -> None:
    """The default report sink: the CLI passes one that prints."""


@dataclass
class DashboardSession:
    record: records.DeploymentRecord
    spec: ProcessSpec
    started: list[Started] = field(default_factory=list)


@dataclass
class DashboardResult:
    record: records.DeploymentRecord
    ready_seconds: float
    warnings: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.record.base_url + "/"


def check_bind(host: str, api_key: str | None) -> None:
    if not is_loopback(host) and not api_key:
        raise ConfigError(f"the dashboard on {host} would let anyone who reaches this machine stop and start models",
                          f"give it a key (--api-key KEY, or {KEY_ENV}), or keep it on 127.0.0.1")  # fmt: skip


def begin(*, host: str, port: int, api_key: str | None, name: str = NAME, mode: str = "detached") -> DashboardSession:
    """Everything before the process starts. Call with the name's lock held."""
    check_bind(host, api_key)
    refuse_if_running(name)
    ports.ensure_free(host, port)
    base = f"http://{client_host(host)}:{port}"
    probe = HttpOk(base, api_key, path="/api/state")
    record = records.DeploymentRecord(
        name=name, backend=BACKEND, api="dashboard", model="dashboard", model_path=None, served_model_name="-",
        host=host, port=port, base_url=base, endpoints={"dashboard": f"{base}/"}, marker=uuid.uuid4().hex,
        started_at=time.time(), log_dir=str(paths.deployment_dir(name) / "logs"), probes=[to_dict(probe)],
        api_key=api_key, device="-", engine={"entry": "python -m launcher.ui"}, mode=mode,
        spec={"dashboard": {"host": host, "port": port}},
    )  # fmt: skip
    env = {"PYTHONUNBUFFERED": "1", **({KEY_ENV: api_key} if api_key else {})}
    argv = (sys.executable, "-m", "launcher.ui", "--host", host, "--port", str(port), "--name", name)
    spec = ProcessSpec(role="ui", argv=argv, env=env, ready=(probe,), secret_env=frozenset({KEY_ENV}))
    return DashboardSession(record, spec)


def start(session: DashboardSession, groups: ProcessGroups, *, report: Report = _quiet,
          cancelled: Callable[[], bool] | None = None) -> float:  # fmt: skip
    t0 = time.monotonic()
    log_dir = Path(session.record.log_dir)
    logs.rotate(log_dir / "ui.log")
    proc = groups.start(session.spec, log_dir=log_dir, marker=session.record.marker)
    session.started.append(proc)
    session.record.processes = [s.record() for s in session.started]
    records.save(session.record)
    report(f"  dashboard: pid {proc.process.pid}, log {proc.log_path}")
    readiness.wait_until_ready(session.spec.ready, session.started, timeout=READY_TIMEOUT, cancelled=cancelled)
    return time.monotonic() - t0


def up_ui(*, host: str = "127.0.0.1", port: int = PORT, api_key: str | None = None, name: str = NAME,
          report: Report = _quiet, groups: ProcessGroups | None = None) -> DashboardResult:  # fmt: skip
    """Start the dashboard detached; it answers when this returns. A failed start leaves nothing."""
    groups = groups or ProcessGroups()
    with records.locked(name):
        session = begin(host=host, port=port, api_key=api_key, name=name)
        try:
            ready = start(session, groups, report=report)
            session.record.status, session.record.ready_seconds = "ready", round(ready, 2)
            records.save(session.record)
            return DashboardResult(session.record, ready)
        except BaseException:
            if session.started:
                groups.stop([s.record() for s in session.started], marker=session.record.marker, timeout=10)
            records.remove(name)
            raise


class DashboardTarget(RecordedTarget):
    def __init__(self, session: DashboardSession, groups: ProcessGroups) -> None:
        super().__init__(session.record, session.started, groups, session.record.stop_timeout)
        self.session = session

    def start(self, *, report: Report, cancelled: Callable[[], bool]) -> float:
        ready = start(self.session, self.groups, report=report, cancelled=cancelled)
        self.record.ready_seconds = round(ready, 2)
        return ready


def run_ui(*, host: str = "127.0.0.1", port: int = PORT, api_key: str | None = None, name: str = NAME,
           report: Report = _quiet, groups: ProcessGroups | None = None, notifier: Notifier | None = None,
           signals: Signals | None = None) -> int:  # fmt: skip
    """The dashboard supervised in the foreground until a signal (what its systemd unit runs)."""
    groups = groups or ProcessGroups()
    if signals is None:
        signals = Signals()
        signals.install()
    with records.locked(name):
        session = begin(host=host, port=port, api_key=api_key, name=name, mode="foreground")
        session.record.supervisor_pid = os.getpid()
        sup = Supervisor(DashboardTarget(session, groups), policy=RestartPolicy(), notifier=notifier or Notifier(),
                         signals=signals, report=report)  # fmt: skip
        ready = sup.start()
        if ready is None:
            return 0
        records.save(session.record)
    sup.announce_ready(ready)
    return sup.supervise()


def restart_ui(record: records.DeploymentRecord, *, report: Report = _quiet) -> DashboardResult:
    """`restart` of the dashboard's own record: the same address and key again."""
    from launcher.lifecycle.down import down

    settings = record.spec.get("dashboard") or {}
    down([record.name])
    return up_ui(host=settings.get("host", record.host), port=int(settings.get("port", record.port)),
                 api_key=record.api_key, name=record.name, report=report)  # fmt: skip


def systemd_unit(*, host: str, port: int, user_unit: bool, run_as: str | None, name: str = NAME) -> File:
    from launcher.lifecycle.specs import modelserve_executable

    return render_dashboard_unit(DashboardUnit(
        name=name, host=host, port=port, exe=modelserve_executable(),
        state_dir=paths.home() if user_unit else Path("/var/lib/modelserve"),
        cache_dir=paths.cache() if user_unit else Path("/var/cache/modelserve"),
        env_file=(paths.home() if user_unit else Path("/etc/modelserve")) / "ui.env", key_env=KEY_ENV,
        user=run_as, user_unit=user_unit, version=version("modelserve"),
    ))  # fmt: skip
