"""`up -c FLEET.yaml --dry-run`: every decision a fleet's `up` makes, with nothing started or written.

The gateway's plan (its process, its probe, the members' start commands and the config entries)
is the one `up` would write; each member's plan is the one the gateway's `modelserve up` of that
member would make: its fleet name, loopback, the model id as its served name, and a free port
(picked now for the plan shown; each start picks one again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher.agents import config_files
from launcher.core.deployment import client_host
from launcher.core.deployment_spec import LoadedSpec
from launcher.core.errors import ModelserveError
from launcher.core.fleet_spec import Fleet, Member
from launcher.core.probe import Probe
from launcher.gateway.plan import GatewayPlan
from launcher.lifecycle import fleet as fleets
from launcher.lifecycle.choose import Engines, choose
from launcher.lifecycle.prepare import Prepared, prepare
from launcher.process import ports
from launcher.process.table import pid_alive
from launcher.store import records

Report = Callable[[str], None]


def _quiet(msg: str) -> None:
    """The default report sink: the CLI passes one that prints."""


@dataclass
class MemberDryRun:
    member: Member
    deployment: str  # FLEET.MEMBER
    port_fixed: bool  # the fleet file gives its port; else a free one is picked at each start
    loaded: LoadedSpec  # the member's spec as the gateway's `up` reads it
    prep: Prepared


@dataclass
class FleetDryRun:
    fleet: Fleet
    plan: GatewayPlan
    base_url: str  # the gateway's, as clients reach it
    gateway_argv: tuple[str, ...]
    gateway_probe: Probe
    members: list[MemberDryRun]
    config_path: str | None
    config_names: list[str]
    warnings: list[str] = field(default_factory=list)


def dry_run(path: str | Path, *, agentscope_config: str | None = None, report: Report = _quiet) -> FleetDryRun:
    fleet = fleets.load(path, agentscope_config=agentscope_config)
    engines = Engines()
    members = [_member(fleet, m, engines, report) for m in fleet.members]
    planned = fleets.plan_members(fleet, report, {d.member.name: d.prep for d in members})
    folder = fleets.fleet_dir(fleet.name)
    plan = fleets.gateway_plan(fleet, folder, planned, write=False)
    entries = fleets.config_entries(fleet, fleets.client_endpoints(fleet, plan, planned))
    config = Path(fleet.agentscope.config).expanduser().absolute() if fleet.agentscope.config else None
    base = f"http://{client_host(fleet.gateway.host)}:{fleet.gateway.port}"
    result = FleetDryRun(fleet, plan, base, fleets.gateway_argv(folder / "gateway.json"), fleets.gateway_probe(fleet, plan),
                         members, str(config) if config else None, [e["config_name"] for e in entries])  # fmt: skip
    result.warnings = [note for d in members for note in d.loaded.notes] + _would_fail(fleet, config)
    return result


def _member(fleet: Fleet, member: Member, engines: Engines, report: Report) -> MemberDryRun:
    """The member's deployment as its `up -c MEMBER.yaml --port P` would load it: the keys the
    member file sets (name, host, served name, ...) over the member's own settings."""
    spec = member.spec
    choice = choose(spec.deployment, engines)
    written = fleets.member_spec(fleet, member, choice.backend.name)
    changed: dict[str, Any] = {k: written[k] for k in ("name", "host", "served_model_name", "model", "fleet") if k in written}
    changed["agentscope"] = spec.deployment.agentscope.model_copy(update={"config": None})
    changed["port"] = member.port or ports.free_port()
    dep = spec.deployment.model_copy(update=changed)
    own = spec.deployment
    sources = {**spec.sources, **{k: f"fleet {fleet.name} ({fleet.path.name})" for k, v in changed.items() if getattr(own, k) != v}}
    loaded = LoadedSpec(dep, sources, list(spec.notes))
    prep = prepare(dep, report=report, dry_run=True, engines=engines, choice=choice)
    return MemberDryRun(member, fleet.member_deployment(member), member.port is not None, loaded, prep)


def _would_fail(fleet: Fleet, config: Path | None) -> list[str]:
    """What would stop the real `up` before the gateway starts, said instead of raised."""
    found = []
    checks: list[Callable[[], Any]] = [lambda: ports.ensure_free(fleet.gateway.host, fleet.gateway.port)]
    if records.exists(fleet.name) and any(pid_alive(p) for p in records.load(fleet.name).processes):
        found.append(f"`up` would stop here: fleet {fleet.name!r} is already running (fix: `modelserve down "
                     f"{fleet.name}` first)")  # fmt: skip
    if config is not None:
        checks.append(lambda: config_files.check_mergeable(config))
    for check in checks:
        try:
            check()
        except ModelserveError as exc:
            found.append(f"`up` would stop here: {exc.message}" + (f" (fix: {exc.hint})" if exc.hint else ""))
    return found
