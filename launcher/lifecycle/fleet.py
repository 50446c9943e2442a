"""`up -c FLEET.yaml`: check the whole fleet, start its gateway, preload the members marked so,
and write one AgentScope config whose entries all point at the gateway.

The fleet is a deployment record like any other (backend ``gateway``, its one process the
gateway), so `status`, `down`, `logs` and `config` work on it by name; each member that runs is a
record ``FLEET.MEMBER`` of its own, started and stopped by the gateway with `modelserve up` /
`modelserve down`. What the gateway needs is written to ``$MODELSERVE_HOME/fleets/FLEET/``: one
YAML file per member and the gateway's plan (0600: it may hold API keys).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

import backends
from backends.probes import OpenAIModelListed
from launcher import devices
from launcher.agents import config_files
from launcher.agents.agentscope import agentscope_entries
from launcher.core.deployment import client_host
from launcher.core.errors import StartupFailed
from launcher.core.fleet_spec import LOOPBACK, Fleet, Member, load_fleet
from launcher.core.launch import ClientEndpoint, ProcessSpec
from launcher.core.probe import to_dict
from launcher.core.telemetry import Telemetry
from launcher.gateway.plan import GatewayPlan, MemberPlan
from launcher.lifecycle.down import stop_members
from launcher.lifecycle.prepare import Prepared, prepare
from launcher.lifecycle.up import refuse_if_running
from launcher.process import logs, ports, readiness
from launcher.process.groups import ProcessGroups
from launcher.store import paths, records
from launcher.store.files import write_atomic

Report = Callable[[str], None]


def _quiet(msg: str) -> None:
    """The default report sink: the CLI passes one that prints."""


@dataclass
class FleetUpResult:
    record: records.DeploymentRecord
    fleet: Fleet
    ready_seconds: float
    preloaded: list[str] = field(default_factory=list)
    config_path: str | None = None
    config_names: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def load(path: str | Path, *, agentscope_config: str | None = None) -> Fleet:
    """The fleet file, checked whole; ``agentscope_config`` (`up --agentscope-config`) replaces
    its top-level ``agentscope.config``."""
    fleet = load_fleet(path, sections=backends.option_models(), backends=tuple(backends.names()))
    if agentscope_config is not None:
        fleet.agentscope = fleet.agentscope.model_copy(update={"config": agentscope_config})
    return fleet


def fleet_dir(name: str) -> Path:
    return paths.home() / "fleets" / name


def _cli() -> list[str]:
    return [sys.executable, "-m", "launcher.cli"]


def member_file(fleet: Fleet, member: Member, folder: Path, backend: str, *, write: bool = True) -> Path:
    """Where the member's deployment file is (written unless ``write`` is false: a dry run)."""
    path = folder / f"{member.name}.yaml"
    if write:
        data = member_spec(fleet, member, backend)
        write_atomic(path, yaml.safe_dump(data, sort_keys=False), mode=0o600, keep_mode=False)
    return path


def member_spec(fleet: Fleet, member: Member, backend: str) -> dict[str, Any]:
    """The member as one deployment file: its own settings, its fleet name, loopback, no config.
    It serves its model under the id clients use (so answers name it too), except on an engine
    that keeps its own model names (Ollama: a new name is a copy under a new tag): the gateway
    rewrites ``model`` instead."""
    data = dict(member.raw)
    if not backends.get(backend).keeps_model_name:
        data.setdefault("served_model_name", member.model_id)
    model = str(data["model"])
    if model.startswith((".", "~")) or Path(model).is_dir():  # a folder: the gateway runs elsewhere
        data["model"] = str(Path(model).expanduser().absolute())
    data.update(name=fleet.member_deployment(member), host=LOOPBACK, agentscope={"config": None}, fleet=fleet.name)
    return data


def gateway_plan(fleet: Fleet, folder: Path, planned: dict[str, Planned], *, write: bool = True) -> GatewayPlan:
    """The plan the gateway reads; each member's file is written to ``folder`` unless ``write`` is false."""
    members = []
    for m in fleet.members:
        dep = m.spec.deployment
        members.append(MemberPlan(
            name=m.name, deployment=fleet.member_deployment(m), model_id=m.model_id,
            aliases=[a for a in (m.name, dep.served_model_name) if a and a != m.model_id],
            preload=m.preload, port=m.port, api_key=dep.api_key, post_path=planned[m.name].post_path,
            memory_bytes=planned[m.name].memory_bytes,
            start_argv=[*_cli(), "up", "-c", str(member_file(fleet, m, folder, planned[m.name].backend, write=write))],
            stop_argv=[*_cli(), "down", fleet.member_deployment(m)],
        ))  # fmt: skip
    stop = max((m.spec.deployment.stop_timeout for m in fleet.members), default=10.0)
    return GatewayPlan(name=fleet.name, host=fleet.gateway.host, port=fleet.gateway.port,
                       api_key=fleet.gateway.api_key, policy=fleet.policy, members=members, stop_timeout=stop,
                       header_timeout=fleet.gateway.header_timeout)  # fmt: skip


@dataclass(frozen=True)
class Planned:
    backend: str
    post_path: str | None  # its POST /llm/ route
    memory_bytes: int  # host memory it needs on the CPU (0: unknown, or on a GPU)
    clients: tuple[ClientEndpoint, ...] = ()  # what its plan hands clients (their kinds say its task)


def plan_members(fleet: Fleet, report: Report, prepared: Mapping[str, Prepared] | None = None) -> dict[str, Planned]:
    """What each member's plan says (a dry run: nothing starts, but an unknown model or backend
    fails here, before the gateway does): its backend, POST route and memory need.
    ``prepared``: the members' plans, when the caller made them already."""
    out: dict[str, Planned] = {}
    for m in fleet.members:
        dep = m.spec.deployment
        prep = prepared[m.name] if prepared is not None else prepare(dep, report=report, dry_run=True)
        post = next((c for c in prep.launch.clients if c.kind == "post_api_chat"), None)
        memory = 0
        if prep.choice.devices.kind == "cpu" and prep.model.path and Path(prep.model.path).is_dir():
            dtype = dep.dtype if dep.dtype != "auto" else "float32"
            estimate = devices.estimate_memory(prep.model.path, dtype=dtype, max_model_len=dep.max_model_len)
            memory = estimate.total if estimate else 0
        out[m.name] = Planned(prep.choice.backend.name, _path_of(post.url) if post else None, memory,
                              prep.launch.clients)  # fmt: skip
    return out


def _path_of(url: str) -> str:
    after = url.split("://", 1)[-1]
    return "/" + after.split("/", 1)[1] if "/" in after else "/"


def client_endpoints(fleet: Fleet, plan: GatewayPlan, planned: dict[str, Planned]) -> list[tuple[str, ClientEndpoint]]:
    """(member name, endpoint) for every entry the config gets, all through the gateway: a chat
    member's OpenAI endpoint (and POST /llm/ where it has one), an embedding member's OpenAI
    embeddings (and POST /v1/embeddings where its plan has it), a reranker's /v1/rerank."""
    base = f"http://{client_host(fleet.gateway.host)}:{fleet.gateway.port}"
    key = fleet.gateway.api_key
    out = []
    for m in plan.members:
        kinds = {c.kind: c for c in planned[m.name].clients}
        if "openai_embedding" in kinds:
            size = kinds["openai_embedding"].dimensions
            out.append((m.name, ClientEndpoint("openai_embedding", f"{base}/v1", m.model_id, key, size)))
            if "post_api_embedding" in kinds:
                out.append((m.name, ClientEndpoint("post_api_embedding", f"{base}/v1/embeddings", m.model_id, key,
                                                   size)))  # fmt: skip
        elif "rerank" in kinds:
            out.append((m.name, ClientEndpoint("rerank", f"{base}/v1/rerank", m.model_id, key)))
        else:
            out.append((m.name, ClientEndpoint("openai_chat", f"{base}/v1", m.model_id, key)))
            if m.post_path:
                out.append((m.name, ClientEndpoint("post_api_chat", f"{base}/llm/{m.name}/", m.model_id, key)))
    return out


def up_fleet(path: str | Path, *, report: Report = _quiet, groups: ProcessGroups | None = None,
             mode: str = "detached", agentscope_config: str | None = None) -> FleetUpResult:  # fmt: skip
    fleet = load(path, agentscope_config=agentscope_config)
    groups = groups or ProcessGroups()
    with records.locked(fleet.name):
        session = begin(fleet, report=report, mode=mode)
        try:
            ready = start_gateway(session, groups, report=report)
            preloaded = preload(session, report=report)
            result = FleetUpResult(session.record, fleet, ready, preloaded, warnings=session.warnings)
            write_clients(session, result)
            session.record.status = "ready"
            records.save(session.record)
            return result
        except BaseException:
            stop_gateway(session, groups)
            records.remove(fleet.name)
            raise


@dataclass
class FleetSession:
    fleet: Fleet
    plan: GatewayPlan
    plan_path: Path
    record: records.DeploymentRecord
    endpoints: list[tuple[str, ClientEndpoint]]
    warnings: list[str]
    started: list[Any] = field(default_factory=list)


def begin(fleet: Fleet, *, report: Report = _quiet, mode: str = "detached") -> FleetSession:
    """Everything before the gateway starts. Call with the fleet's lock held."""
    refuse_if_running(fleet.name)
    gw = fleet.gateway
    warnings = []
    if gw.host not in (LOOPBACK, "localhost", "::1") and not gw.api_key:
        warnings.append(f"gateway on {gw.host} without an API key: anyone who can reach this machine can use "
                        "every model of the fleet (set gateway.api_key)")  # fmt: skip
    if fleet.agentscope.config:
        config_files.check_mergeable(Path(fleet.agentscope.config).expanduser().absolute())
    ports.ensure_free(gw.host, gw.port)
    folder = fleet_dir(fleet.name)
    folder.mkdir(parents=True, exist_ok=True)
    planned = plan_members(fleet, report)
    plan = gateway_plan(fleet, folder, planned)
    plan_path = folder / "gateway.json"
    write_atomic(plan_path, plan.model_dump_json(indent=2), mode=0o600, keep_mode=False)
    base = f"http://{client_host(gw.host)}:{gw.port}"
    endpoints = client_endpoints(fleet, plan, planned)
    probe = gateway_probe(fleet, plan)
    record = records.DeploymentRecord(
        name=fleet.name, backend="gateway", api="openai", model=f"fleet {fleet.path}", model_path=None,
        served_model_name=", ".join(m.model_id for m in plan.members), host=gw.host, port=gw.port,
        base_url=base, endpoints={"openai": f"{base}/v1", "metrics": f"{base}/metrics", "fleet": f"{base}/fleet"},
        marker=uuid.uuid4().hex, started_at=time.time(), log_dir=str(paths.deployment_dir(fleet.name) / "logs"),
        probes=[to_dict(probe)], api_key=gw.api_key, device="-", stop_timeout=plan.stop_timeout * 2 + 15,
        engine={"entry": "python -m launcher.gateway"}, mode=mode, agentscope=fleet.agentscope.model_dump(),
        members=[m.deployment for m in plan.members], spec_file=str(fleet.path),
        telemetry=Telemetry(requests_path="/modelserve/requests").to_dict(),
        client_endpoints=[asdict(e) for _, e in endpoints],
    )  # fmt: skip
    return FleetSession(fleet, plan, plan_path, record, endpoints, warnings)


def gateway_probe(fleet: Fleet, plan: GatewayPlan) -> OpenAIModelListed:
    """The gateway answers when its /v1/models lists the first member (loaded or not)."""
    base = f"http://{client_host(fleet.gateway.host)}:{fleet.gateway.port}"
    return OpenAIModelListed(base, fleet.gateway.api_key, model=plan.members[0].model_id)


def gateway_argv(plan_path: Path) -> tuple[str, ...]:
    return (sys.executable, "-m", "launcher.gateway", str(plan_path))


def gateway_spec(session: FleetSession) -> ProcessSpec:
    """The gateway's process, gated on the probe its record holds (the one `status` asks again)."""
    return ProcessSpec(role="gateway", argv=gateway_argv(session.plan_path),
                       ready=tuple(session.record.readiness_probes()), env={"PYTHONUNBUFFERED": "1"})  # fmt: skip


def start_gateway(session: FleetSession, groups: ProcessGroups, *, report: Report = _quiet,
                  cancelled: Callable[[], bool] | None = None) -> float:  # fmt: skip
    record = session.record
    report(f"starting fleet {record.name}: gateway on {record.base_url}, members "
           f"{', '.join(m.name for m in session.plan.members)}")  # fmt: skip
    t0 = time.monotonic()
    log_dir = Path(record.log_dir)
    logs.rotate(log_dir / "gateway.log")
    spec = gateway_spec(session)
    proc = groups.start(spec, log_dir=log_dir, marker=record.marker)
    session.started.append(proc)
    record.processes = [s.record() for s in session.started]
    records.save(record)
    report(f"  gateway: pid {proc.process.pid}, log {proc.log_path}")
    readiness.wait_until_ready(spec.ready, session.started, timeout=60.0, cancelled=cancelled)
    return time.monotonic() - t0


def preload(session: FleetSession, *, report: Report = _quiet) -> list[str]:
    """Ask the gateway to load each member marked preload, and wait until it answers."""
    from urllib import error, request

    done = []
    for m in session.plan.members:
        if not m.preload:
            continue
        report(f"  loading {m.name} ({m.model_id})")
        req = request.Request(f"{session.record.base_url}/fleet/load/{m.name}", method="POST", data=b"")
        if session.plan.api_key:
            req.add_header("Authorization", f"Bearer {session.plan.api_key}")
        try:
            with request.urlopen(req, timeout=session.plan.policy.start_timeout + 30) as resp:
                resp.read()
        except error.HTTPError as exc:
            detail = json.loads(exc.read() or b"{}").get("error", {}).get("message", str(exc))
            raise StartupFailed(f"fleet member {m.name} did not start: {detail}",
                                f"see `modelserve logs {session.record.name}` and the member's own log") from None  # fmt: skip
        done.append(m.name)
    return done


def write_clients(session: FleetSession, result: FleetUpResult) -> None:
    settings = session.fleet.agentscope
    if not settings.config:
        return
    path = Path(settings.config).expanduser().absolute()
    entries = config_entries(session.fleet, session.endpoints)
    config_files.merge(path, entries)
    result.config_path = str(path)
    result.config_names = [e["config_name"] for e in entries]
    session.record.clients = [records.ClientRecord("agentscope", str(path), result.config_names)]


def config_entries(fleet: Fleet, endpoints: list[tuple[str, ClientEndpoint]]) -> list[dict[str, Any]]:
    """The AgentScope entries of the fleet's one config, named by model id, as `modelserve config
    FLEET --member ID` names them."""
    settings = fleet.agentscope
    entries = []
    for _, endpoint in endpoints:
        entries += agentscope_entries([endpoint], settings, f"{settings.config_name or fleet.name}-{endpoint.model_name}")
    return entries


def stop_gateway(session: FleetSession, groups: ProcessGroups, *, timeout: float | None = None,
                 interrupt: Callable[[], bool] | None = None) -> None:  # fmt: skip
    """SIGTERM to the gateway (it stops its members first), bounded wait, SIGKILL; then any
    member it left (a gateway killed hard leaves them). Also when ``started`` is empty: a signal
    just after the spawn leaves the gateway out of it, but not without its marker."""
    groups.stop([s.record() for s in session.started], marker=session.record.marker,
                timeout=session.record.stop_timeout if timeout is None else timeout, interrupt=interrupt)  # fmt: skip
    session.started.clear()
    stop_members(session.record.name, groups)


