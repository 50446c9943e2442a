"""`restart NAME`: a deployment stopped and started again with the settings it was started with
(the resolved Deployment its record keeps), or a fleet from its file. What something else
starts and stops is left to that: a fleet member to its gateway (unload and load it), a
deployment under `modelserve run` to its runner (or systemd), a server modelserve did not start."""

from __future__ import annotations

from collections.abc import Callable

from launcher.core.deployment import Deployment
from launcher.core.deployment_spec import LoadedSpec
from launcher.core.errors import ManagedElsewhere
from launcher.lifecycle import dashboard, fleet
from launcher.lifecycle import down as stopping
from launcher.lifecycle import up as starting
from launcher.store import records
from launcher.ui import BACKEND

Report = Callable[[str], None]


def _quiet(msg: str) -> None:
    """The default report sink: the CLI passes one that prints."""


def restart(name: str, *, report: Report = _quiet) -> starting.UpResult | fleet.FleetUpResult | dashboard.DashboardResult:
    record = records.load(name)
    _refuse_if_managed_elsewhere(record)
    if record.backend == BACKEND:
        return dashboard.restart_ui(record, report=report)
    if record.members:
        if not record.spec_file:
            raise _no_settings(name)
        stopping.down([name])
        return fleet.up_fleet(record.spec_file, report=report)
    if not record.spec:
        raise _no_settings(name)
    dep = Deployment.model_validate(record.spec)
    stopping.down([name])
    return starting.up(LoadedSpec(dep), report=report)


def _refuse_if_managed_elsewhere(record: records.DeploymentRecord) -> None:
    if record.fleet:
        raise ManagedElsewhere(f"{record.name} is a member of fleet {record.fleet}: its gateway starts and stops it",
                               f"unload and load it: POST /fleet/unload/NAME then /fleet/load/NAME on the gateway, "
                               f"or restart the fleet: `modelserve restart {record.fleet}`")  # fmt: skip
    if record.mode == "foreground":
        raise ManagedElsewhere(f"{record.name} is supervised by `modelserve run` (pid {record.supervisor_pid})",
                               f"restart it there (under systemd: `systemctl restart modelserve-{record.name}`)")  # fmt: skip
    if record.external:
        raise ManagedElsewhere(f"{record.name} reuses a server modelserve did not start ({record.base_url})",
                               "restart that server the way it was started")  # fmt: skip


def _no_settings(name: str) -> ManagedElsewhere:
    return ManagedElsewhere(f"{name} was started by an older modelserve that did not record its settings",
                            f"run `modelserve down {name}` and start it again with `modelserve up`")  # fmt: skip
