"""`up`: pre-flight checks, the plan, the processes started in order and gated on their probes,
the backend's after-start work, then the agent config. A failed or interrupted `up` leaves
nothing running and no record behind.

Progress while starting goes through a ``report`` callable (stderr in the CLI) so the final
summary on stdout stays clean.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from launcher.agents import config_files
from launcher.agents.agentscope import agentscope_entries
from launcher.core.deployment import Deployment
from launcher.core.deployment_spec import LoadedSpec
from launcher.core.errors import AlreadyRunning
from launcher.core.probe import Probe, to_dict
from launcher.lifecycle.choose import Engines, choose
from launcher.lifecycle.prepare import Prepared, prepare
from launcher.process import logs, ports, readiness
from launcher.process.groups import ProcessGroups, Started
from launcher.process.table import find_members, pid_alive
from launcher.store import paths, records

Report = Callable[[str], None]


def _quiet(msg: str) -> None:
    """The default report sink: the CLI passes one that prints."""


@dataclass
class UpResult:
    record: records.DeploymentRecord
    backend_reason: str
    model_description: str
    ready_seconds: float
    config_path: str | None = None
    config_names: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Session:
    """One deployment being started: what was decided, and what runs so far."""

    dep: Deployment
    prep: Prepared
    record: records.DeploymentRecord
    log_dir: Path
    config_path: Path | None
    warnings: list[str]
    started: list[Started] = field(default_factory=list)


def begin(dep: Deployment, *, report: Report = _quiet, mode: str = "detached") -> Session:
    """Everything before the first process starts: refusals, pre-flight checks, the plan, the
    record. Call with the deployment's lock held."""
    name = dep.deployment_name
    refuse_if_running(name)
    warnings: list[str] = []
    if not dep.is_loopback and not dep.api_key:
        warnings.append(
            f"binding {dep.host} without an API key: anyone who can reach this machine can use the model "
            "(add --api-key KEY)"
        )
    config_path = _agentscope_path(dep)
    if config_path is not None:
        config_files.check_mergeable(config_path)  # before anything starts: never fail after
    engines = Engines()
    choice = choose(dep, engines)
    running = choice.backend.find_running(dep)
    if running is not None:
        running += _started_by(dep.port)
        report(f"reusing {running} (modelserve will not stop it)")
    prep = prepare(dep, report=report, engines=engines, choice=choice, running=running)
    if running is None:
        # After the model is found: a missing model is the more fundamental error than a busy
        # port (and a test suite run beside a server on 8000 must still see exit 4 for it).
        ports.ensure_free(dep.host, dep.port, owner_hint=_port_owner(dep.port))
    if prep.fit is not None and not prep.fit.fits:
        warnings.append(f"--force: starting although {prep.fit.message}")
    return Session(dep, prep, _new_record(dep, prep, mode), paths.deployment_dir(name) / "logs", config_path, warnings)


def _new_record(dep: Deployment, prep: Prepared, mode: str) -> records.DeploymentRecord:
    launch = prep.launch
    return records.DeploymentRecord(
        name=dep.deployment_name,
        backend=prep.choice.backend.name,
        api=launch.api,
        model=dep.model,
        model_path=prep.model.path,
        served_model_name=launch.served_model_name,
        host=dep.host,
        port=dep.port,
        base_url=dep.base_url,
        endpoints=dict(launch.endpoints),
        marker=uuid.uuid4().hex,
        started_at=time.time(),
        log_dir=str(paths.deployment_dir(dep.deployment_name) / "logs"),
        probes=[to_dict(p) for p in launch.probes],
        api_key=dep.api_key,
        device=prep.choice.devices.describe(),
        notes=list(launch.notes),
        external=launch.external,
        stop_timeout=dep.stop_timeout,
        engine=dict(launch.engine),
        client_endpoints=[asdict(c) for c in launch.clients],
        mode=mode,
        agentscope=dep.agentscope.model_dump(),
        tools=launch.tools,
        surfaces={str(name): str(how) for name, how in launch.surfaces.items()},
        fleet=dep.fleet,
        spec=dep.model_dump(mode="json"),
        telemetry=launch.telemetry.to_dict() if launch.telemetry else {},
        task=prep.choice.task,
    )


def start_processes(
    session: Session,
    groups: ProcessGroups,
    *,
    report: Report = _quiet,
    cancelled: Callable[[], bool] | None = None,
) -> float:
    """Start the plan's processes in order, each gated on its probes, then the backend's
    after-start work and final probes. Returns the seconds until ready. Raises on failure
    (the caller stops what ``session.started`` holds)."""
    dep, launch, record = session.dep, session.prep.launch, session.record
    name = record.name
    report(f"starting {name}: {launch.backend}, {record.device}, model {session.prep.model.description}")
    t0 = time.monotonic()
    deadline = t0 + dep.timeout

    def progress(seconds: float, last: str) -> None:
        report(f"  waiting for {name}: {seconds:.0f} s ({last})")

    def wait(probes: tuple[Probe, ...]) -> None:
        readiness.wait_until_ready(probes, session.started, timeout=max(deadline - time.monotonic(), 0.1),
                                   on_progress=progress, cancelled=cancelled)  # fmt: skip

    for spec in launch.processes:
        logs.rotate(session.log_dir / f"{spec.role}.log")
        proc = groups.start(spec, log_dir=session.log_dir, marker=record.marker)
        session.started.append(proc)
        record.processes = [s.record() for s in session.started]
        records.save(record)
        report(f"  {spec.role}: pid {proc.process.pid}, log {proc.log_path}")
        wait(spec.ready)
    session.prep.choice.backend.after_start(deployment=dep, model=session.prep.model, launch=launch, report=report,
                                            deadline=deadline)  # fmt: skip
    if launch.final_probes:
        wait(launch.final_probes)
    return time.monotonic() - t0


def write_clients(session: Session) -> list[str]:
    """Merge the AgentScope entries into the configured file; returns their config names."""
    if session.config_path is None:
        return []
    dep, record = session.dep, session.record
    entries = agentscope_entries(session.prep.launch.clients, dep.agentscope, dep.agentscope.config_name or record.name)
    if not entries:  # a reranker: AgentScope has no model type for it (the plan's notes say so)
        session.config_path = None
        return []
    config_files.merge(session.config_path, entries)
    names = [e["config_name"] for e in entries]
    record.clients = [records.ClientRecord("agentscope", str(session.config_path), names)]
    return names


def stop_started(session: Session, groups: ProcessGroups, *, timeout: float | None = None,
                 interrupt: Callable[[], bool] | None = None) -> None:  # fmt: skip
    """Stop whatever the session started so far: what ``started`` holds, and anything carrying
    the session's marker (a signal that lands just after a process was spawned leaves it out of
    ``started``)."""
    groups.stop([s.record() for s in session.started], marker=session.record.marker,
                timeout=session.dep.stop_timeout if timeout is None else timeout, interrupt=interrupt)  # fmt: skip
    session.started.clear()


def abort(session: Session, groups: ProcessGroups) -> None:
    """Stop whatever the session started and leave no record behind."""
    stop_started(session, groups)
    records.remove(session.record.name)


def up(loaded: LoadedSpec, *, report: Report = _quiet, groups: ProcessGroups | None = None) -> UpResult:
    dep = loaded.deployment
    groups = groups or ProcessGroups()
    with records.locked(dep.deployment_name):
        session = begin(dep, report=report)
        try:
            ready = start_processes(session, groups, report=report)
            result = UpResult(session.record, session.prep.choice.reason, session.prep.model.description, ready,
                              warnings=[*loaded.notes, *session.warnings])  # fmt: skip
            result.config_names = write_clients(session)
            result.config_path = str(session.config_path) if session.config_path else None
            session.record.status = "ready"
            session.record.ready_seconds = round(ready, 2)
            records.save(session.record)
            return result
        except BaseException:
            # A failed or interrupted up leaves nothing running and no record behind.
            abort(session, groups)
            raise


def _agentscope_path(dep: Deployment) -> Path | None:
    raw = dep.agentscope.config
    return Path(raw).expanduser().absolute() if raw else None


def refuse_if_running(name: str) -> None:
    if not records.exists(name):
        return
    record = records.load(name)
    if record.external or any(pid_alive(p) for p in record.processes) or find_members(record.processes, record.marker):
        raise AlreadyRunning(
            f"deployment {name!r} is already running ({record.backend}, {record.base_url}, pid {record.pid})",
            f"run `modelserve down {name}` first, or pick another --name",
        )
    records.remove(name)  # its processes are gone: the record is stale


def _port_owner(port: int) -> str | None:
    return next((r.name for r in records.list_all() if r.port == port), None)


def _started_by(port: int) -> str:
    """A note naming the deployment that started the server being reused, if one did."""
    try:
        owner = next((r.name for r in records.list_all() if r.port == port and not r.external and r.processes), None)
    except Exception:  # a broken record must not stop a reuse
        return ""
    return f" (started by modelserve deployment {owner!r}, whose `modelserve down` stops it)" if owner else ""
