"""`modelserve run -c FLEET.yaml` and the fleet's systemd unit: the fleet's gateway supervised in
the foreground the way `run` supervises one deployment (``process.supervise``)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from launcher.core.deployment import Deployment
from launcher.lifecycle.down import stop_members
from launcher.lifecycle.fleet import (
    FleetSession,
    FleetUpResult,
    Report,
    begin,
    load,
    preload,
    start_gateway,
    write_clients,
)
from launcher.lifecycle.run import RecordedTarget
from launcher.process.groups import ProcessGroups
from launcher.process.notify import Notifier
from launcher.process.supervise import RestartPolicy, Signals, Supervisor
from launcher.store import paths, records
from launcher.systemd.units import File, UnitInputs, render_unit


def _quiet(msg: str) -> None:
    """The default report sink: the CLI passes one that prints."""


class FleetTarget(RecordedTarget):
    """A fleet as the supervisor drives it: its one process is the gateway. A gateway that dies
    is started again and adopts the members still running; stopping it (SIGTERM) stops them, and
    stopping only it lets a restart find them."""

    def __init__(self, session: FleetSession, groups: ProcessGroups) -> None:
        super().__init__(session.record, session.started, groups, session.record.stop_timeout)
        self.session = session

    def start(self, *, report: Report, cancelled: Callable[[], bool]) -> float:
        t0 = time.monotonic()
        start_gateway(self.session, self.groups, report=report, cancelled=cancelled)
        preload(self.session, report=report)
        self.record.ready_seconds = round(time.monotonic() - t0, 2)
        return time.monotonic() - t0

    def forget(self) -> None:
        stop_members(self.name, self.groups)  # any a gateway killed hard left behind
        super().forget()


def run_fleet(path: str | Path, *, report: Report = _quiet, groups: ProcessGroups | None = None,
              notifier: Notifier | None = None, signals: Signals | None = None, poll_interval: float = 0.5) -> int:  # fmt: skip
    """Start the fleet, supervise its gateway until a signal, stop. Returns the exit code."""
    groups = groups or ProcessGroups()
    notifier = notifier or Notifier()
    if signals is None:
        signals = Signals()
        signals.install()
    fleet = load(path)
    with records.locked(fleet.name):
        session = begin(fleet, report=report, mode="foreground")
        session.record.supervisor_pid = os.getpid()
        sup = Supervisor(FleetTarget(session, groups), policy=RestartPolicy(), notifier=notifier, signals=signals,
                         report=report, poll_interval=poll_interval)  # fmt: skip
        ready = sup.start()
        if ready is None:
            return 0
        try:
            write_clients(session, FleetUpResult(session.record, fleet, ready))
            records.save(session.record)
        except BaseException:
            sup.shutdown("failed to start")
            raise
    sup.announce_ready(ready)
    return sup.supervise()


def systemd_unit(path: Path, *, user_unit: bool, run_as: str | None) -> File:
    """The unit that runs the fleet at ``path`` with `modelserve run` (Type=notify: READY=1 once
    the gateway answers and the preloaded members are loaded)."""
    from importlib.metadata import version

    from launcher import devices
    from launcher.lifecycle.specs import modelserve_executable

    fleet = load(path)
    deps = [m.spec.deployment for m in fleet.members]
    preloaded = sum(m.preload for m in fleet.members)
    as_one = Deployment(model=f"fleet {path}", name=fleet.name, backend="gateway", host=fleet.gateway.host,
                        port=fleet.gateway.port, timeout=60 + preloaded * fleet.policy.start_timeout,
                        stop_timeout=max(d.stop_timeout for d in deps) * 2 + 15, agentscope=fleet.agentscope)  # fmt: skip
    gpu = any(d.device.startswith("cuda") for d in deps) or (any(d.device == "auto" for d in deps) and bool(devices.discover()))  # fmt: skip
    local = [str(Path(d.model).expanduser().absolute()) for d in deps if Path(d.model).expanduser().is_dir()]
    inputs = UnitInputs(
        spec_path=path, exe=modelserve_executable(),
        state_dir=paths.home() if user_unit else Path("/var/lib/modelserve"),
        cache_dir=paths.cache() if user_unit else Path("/var/cache/modelserve"),
        user=run_as, user_unit=user_unit, gpu=gpu, model_path=local[0] if local else None,
        version=version("modelserve"),
    )  # fmt: skip
    return render_unit(as_one, inputs)
