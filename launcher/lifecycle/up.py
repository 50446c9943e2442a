"""The operations behind the commands: up, down, status, health, logs.

Each returns a result object; ``cli.py`` renders it. Progress while starting goes through a
``report`` callable (stderr in the CLI) so the final summary on stdout stays clean.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import psutil

import backends
from backends.base import Backend, LaunchPlan, PlanContext, ReadinessProbe
from launcher import clients, devices, health, models, paths, ports, state
from launcher.errors import (
    AlreadyRunning,
    BackendUnavailable,
    DeviceError,
    ModelserveError,
    StopFailed,
)
from launcher.spec import Deployment, LoadedSpec
from launcher.supervisor import Started, StopReport, Supervisor, find_members, pid_alive

Report = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Choice:
    backend: Backend
    reason: str
    devices: devices.DevicePlan


@dataclass
class UpResult:
    record: state.DeploymentRecord
    backend_reason: str
    model_description: str
    ready_seconds: float
    config_path: str | None = None
    config_names: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def choose(dep: Deployment, gpus: list[devices.Gpu] | None = None) -> Choice:
    """Pick the backend and devices, and say why (the summary prints the reason)."""
    gpus = devices.discover() if gpus is None else gpus
    if dep.backend != "auto":
        backend = backends.get(dep.backend)
        dplan = devices.plan(dep.device, gpus, count=dep.gpus, supports_cpu=backend.supports_cpu)
        return Choice(backend, f"{backend.name} (asked for)", dplan)
    dplan = devices.plan(dep.device, gpus, count=dep.gpus)
    if dplan.kind == "cuda" and "vllm" in backends.names():
        vllm = backends.get("vllm")
        avail = vllm.available(python=engine_python(dep, vllm), deployment=dep)
        if avail.ok:
            return Choice(vllm, f"{len(dplan.gpus)} GPU(s) and {avail.version} installed: vllm", dplan)
        backend = backends.get("flask-transformers")
        return Choice(backend, f"GPU found but vllm is not installed ({avail.reason}): flask-transformers", dplan)
    backend = backends.get("flask-transformers")
    where = "on CPU" if dplan.kind == "cpu" else f"on {dplan.describe()}"
    return Choice(backend, f"{dplan.reason}: flask-transformers {where}", dplan)


def engine_python(dep: Deployment, backend: Backend) -> str:
    """The interpreter that runs the engine: ``python:`` when given; else this one when it has
    the engine; else the backend's managed environment when one was created; else this one
    (and the availability check then says what is missing and how to get it)."""
    if dep.python:
        return dep.python
    if backend.env_name is None or backend.available(deployment=dep).ok:
        return sys.executable
    from launcher import envs

    return envs.ready_python(backend.env_name) or sys.executable


@dataclass
class Prepared:
    choice: Choice
    python: str
    model: models.ResolvedModel
    launch: LaunchPlan
    fit: devices.FitVerdict | None


def prepare(
    dep: Deployment,
    *,
    report: Report = _stderr,
    dry_run: bool = False,
    choice: Choice | None = None,
    running: str | None = None,
) -> Prepared:
    """Everything `up` decides before it starts anything (`up --dry-run` prints it).

    A dry run converts nothing and raises for nothing it can still show (a missing engine, a
    model that will not fit): it reports them instead. ``running``: a server to reuse.
    """
    choice = choice or choose(dep)
    backend = choice.backend
    if dry_run and running is None:
        running = backend.find_running(dep)
    model = backend.resolve_model(dep, prepare=not dry_run, progress=report)
    dtype = dep.dtype if dep.dtype != "auto" else ("float32" if choice.devices.kind == "cpu" else "bfloat16")
    estimate = None
    if model.path is not None and Path(model.path).is_dir():
        estimate = devices.estimate_memory(model.path, dtype=dtype, max_model_len=dep.max_model_len)
    fit = None
    if estimate is not None and choice.devices.kind == "cuda":
        utilization = (dep.gpu_memory_utilization or 0.9) if backend.claims_gpu_share else None
        used = choice.devices if backend.tensor_parallel else replace(choice.devices, gpus=choice.devices.gpus[:1])
        visible = len(devices.discover()) if backend.tensor_parallel else None
        fit = devices.check_fit(estimate, used, utilization=utilization, visible=visible)
        problem = devices.tensor_parallel_problem(model.path or "", used.tensor_parallel)
        if problem:
            fit = devices.FitVerdict(False, problem, "pick a --gpus count that divides the head counts")
        if not fit.fits and not dep.force and not dry_run:
            raise DeviceError(fit.message, fit.hint)
    python = engine_python(dep, backend)
    avail = backend.available(python=None if python == sys.executable else python, deployment=dep)
    if not avail.ok and not dry_run and running is None:
        raise BackendUnavailable(f"backend {backend.name} cannot run here: {avail.reason}", _install_hint(backend.name))
    ctx = PlanContext(
        python=python,
        log_dir=paths.deployment_dir(dep.deployment_name) / "logs",
        free_port=ports.free_port,
        cpu_count=cpu_count(),
        engine=backend.inspect(python, dep),
        memory_available=psutil.virtual_memory().available,
        model_bytes=estimate.weights if estimate else 0,
        running=running,
        checkpoint_dtype=devices.checkpoint_dtype(model.path) if model.path else None,
    )
    launch = backend.plan(deployment=dep, model=model, devices=choice.devices, ctx=ctx)
    if not avail.ok and running is None:
        launch = replace(launch, notes=(*launch.notes, f"cannot start here: {avail.reason}"))
    return Prepared(choice, python, model, launch, fit)


@dataclass
class Session:
    """One deployment being started: what was decided, and what runs so far."""

    dep: Deployment
    prep: Prepared
    record: state.DeploymentRecord
    log_dir: Path
    config_path: Path | None
    warnings: list[str]
    started: list[Started] = field(default_factory=list)


def begin(dep: Deployment, *, report: Report = _stderr, mode: str = "detached") -> Session:
    """Everything before the first process starts: refusals, pre-flight checks, the plan, the
    record. Call with the deployment's lock held."""
    name = dep.deployment_name
    _refuse_if_running(name)
    warnings: list[str] = []
    if not dep.is_loopback and not dep.api_key:
        warnings.append(
            f"binding {dep.host} without an API key: anyone who can reach this machine can use the model "
            "(add --api-key KEY)"
        )
    config_path = _agentscope_path(dep)
    if config_path is not None:
        clients.check_mergeable(config_path)  # before anything starts: never fail after
    choice = choose(dep)
    running = choice.backend.find_running(dep)
    if running is None:
        ports.ensure_free(dep.host, dep.port, owner_hint=_port_owner(dep.port))
    else:
        report(f"reusing {running} (modelserve will not stop it)")
    prep = prepare(dep, report=report, choice=choice, running=running)
    if prep.fit is not None and not prep.fit.fits:
        warnings.append(f"--force: starting although {prep.fit.message}")
    launch, log_dir = prep.launch, paths.deployment_dir(name) / "logs"
    record = state.DeploymentRecord(
        name=name,
        backend=choice.backend.name,
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
        log_dir=str(log_dir),
        probes=[_probe_dict(p) for spec in launch.processes for p in spec.ready]
        + [_probe_dict(p) for p in launch.final_probes],
        api_key=dep.api_key,
        device=choice.devices.describe(),
        notes=list(launch.notes),
        external=launch.external,
        stop_timeout=dep.stop_timeout,
        engine=dict(launch.engine),
        client_endpoints=[asdict(c) for c in launch.clients],
        mode=mode,
        agentscope=dep.agentscope.model_dump(),
    )
    return Session(dep, prep, record, log_dir, config_path, warnings)


def start_processes(
    session: Session,
    sup: Supervisor,
    *,
    report: Report = _stderr,
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

    for spec in launch.processes:
        _rotate(session.log_dir / f"{spec.role}.log")
        proc = sup.start(spec, log_dir=session.log_dir, marker=record.marker)
        session.started.append(proc)
        record.processes = [s.record() for s in session.started]
        state.save(record)
        report(f"  {spec.role}: pid {proc.process.pid}, log {proc.log_path}")
        health.wait_until_ready(spec.ready, session.started, timeout=max(deadline - time.monotonic(), 0.1),
                                on_progress=progress, cancelled=cancelled)  # fmt: skip
    session.prep.choice.backend.after_start(deployment=dep, model=session.prep.model, launch=launch, report=report,
                                            deadline=deadline)  # fmt: skip
    if launch.final_probes:
        health.wait_until_ready(launch.final_probes, session.started, timeout=max(deadline - time.monotonic(), 0.1),
                                on_progress=progress, cancelled=cancelled)  # fmt: skip
    return time.monotonic() - t0


def write_clients(session: Session) -> list[str]:
    """Merge the AgentScope entries into the configured file; returns their config names."""
    if session.config_path is None:
        return []
    dep, record = session.dep, session.record
    entries = clients.agentscope_entries(session.prep.launch.clients, dep.agentscope,
                                         dep.agentscope.config_name or record.name)  # fmt: skip
    clients.merge(session.config_path, entries)
    names = [e["config_name"] for e in entries]
    record.clients = [state.ClientRecord("agentscope", str(session.config_path), names)]
    return names


def abort(session: Session, sup: Supervisor) -> None:
    """Stop whatever the session started and leave no record behind."""
    if session.started:
        sup.stop([s.record() for s in session.started], marker=session.record.marker, timeout=session.dep.stop_timeout)
        session.started.clear()
    state.remove(session.record.name)


def up(loaded: LoadedSpec, *, report: Report = _stderr, supervisor: Supervisor | None = None) -> UpResult:
    dep = loaded.deployment
    sup = supervisor or Supervisor()
    with state.locked(dep.deployment_name):
        session = begin(dep, report=report)
        try:
            ready = start_processes(session, sup, report=report)
            result = UpResult(session.record, session.prep.choice.reason, session.prep.model.description, ready,
                              warnings=session.warnings)  # fmt: skip
            result.config_names = write_clients(session)
            result.config_path = str(session.config_path) if session.config_path else None
            session.record.status = "ready"
            session.record.ready_seconds = round(ready, 2)
            state.save(session.record)
            return result
        except BaseException:
            # A failed or interrupted up leaves nothing running and no record behind.
            abort(session, sup)
            raise


def _install_hint(backend: str) -> str:
    hints = {
        "flask-transformers": "pip install torch==2.13.0 && pip install 'modelserve[hf]'  (CPU torch first)",
        "flask-modelscope": "pip install 'modelserve[hf,modelscope]'",
        "vllm": "modelserve env create vllm",
        "fastchat": "modelserve env create fastchat",
        "ollama": "install Ollama (https://ollama.com/download) or set ollama_bin: in the deployment YAML",
    }
    return hints.get(backend, "install the engine, or pick another backend with -b (see `modelserve backends`)")


def _agentscope_path(dep: Deployment) -> Path | None:
    raw = dep.agentscope.config
    return Path(raw).expanduser().absolute() if raw else None


def _refuse_if_running(name: str) -> None:
    if not state.exists(name):
        return
    record = state.load(name)
    if record.external or any(pid_alive(p) for p in record.processes) or find_members(record.processes, record.marker):
        raise AlreadyRunning(
            f"deployment {name!r} is already running ({record.backend}, {record.base_url}, pid {record.pid})",
            f"run `modelserve down {name}` first, or pick another --name",
        )
    state.remove(name)  # its processes are gone: the record is stale


def _port_owner(port: int) -> str | None:
    for record in state.list_all():
        if record.port == port:
            return record.name
    return None


def _rotate(log: Path) -> None:
    if log.exists():
        os.replace(log, log.with_name(log.name + ".1"))


def _probe_dict(p: ReadinessProbe) -> dict[str, str | None]:
    return {"kind": p.kind, "url": p.url, "model": p.model, "path": p.path}


def _probes(record: state.DeploymentRecord, cheap: bool = False) -> list[ReadinessProbe]:
    probes = [
        ReadinessProbe(d["kind"], d["url"], d.get("model"), record.api_key, d.get("path") or "")
        for d in record.probes
    ]
    if cheap:
        # Status shows live health for many deployments: skip the probes that generate tokens.
        light = [p for p in probes if p.kind not in ("openai-chat", "post-llm")]
        return light or probes
    return probes


# ---- down -----------------------------------------------------------------------------------


@dataclass
class DownResult:
    name: str
    report: StopReport
    forgot: int = 0
    external: bool = False


def down(
    names: list[str] | None,
    *,
    forget_config: bool = False,
    timeout: float | None = None,
    supervisor: Supervisor | None = None,
) -> list[DownResult]:
    """Stop deployments (all when ``names`` is None). Raises DeploymentNotFound for unknown names."""
    sup = supervisor or Supervisor()
    records = state.list_all() if names is None else [state.load(n) for n in names]
    results = []
    for record in records:
        if record.mode == "foreground" and _stop_runner(record, timeout or record.stop_timeout):
            forgot = _forget(record) if forget_config else 0
            results.append(DownResult(record.name, StopReport(), forgot, False))
            continue
        with state.locked(record.name, timeout=30):
            if record.external:
                rep = StopReport(already_gone=True)
            else:
                rep = sup.stop(
                    record.processes, marker=record.marker, timeout=timeout or record.stop_timeout
                )
            if rep.survivors:
                raise StopFailed(
                    f"{record.name}: pids {rep.survivors} survived SIGKILL",
                    "they may be stuck in the kernel (D state); check `ps -o pid,stat,cmd -p ...`",
                )
            forgot = _forget(record) if forget_config else 0
            state.remove(record.name)
            results.append(DownResult(record.name, rep, forgot, record.external))
    return results


def _forget(record: state.DeploymentRecord) -> int:
    """Remove the agent config entries `up` (and `config --write`) merged for this deployment."""
    removed = 0
    for client in record.clients:
        if client.kind == "agentfabric":
            removed += clients.remove_object_entries(Path(client.path), client.names)
        else:
            removed += clients.remove_entries(Path(client.path), client.names)
    return removed


def _stop_runner(record: state.DeploymentRecord, timeout: float) -> bool:
    """A `modelserve run` deployment: ask the runner to stop (killing its children would only make
    it restart them). True once the runner has stopped everything; False: do it here instead."""
    import signal

    pid = record.supervisor_pid
    try:
        runner = psutil.Process(pid) if pid else None
        if runner is None or runner.create_time() > record.started_at + 1:
            return False  # gone, or a recycled pid
        runner.send_signal(signal.SIGTERM)
        runner.wait(timeout + 15)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        return False
    return not state.exists(record.name) or not find_members(record.processes, record.marker)


# ---- status / health / logs -----------------------------------------------------------------


@dataclass
class Status:
    name: str
    backend: str
    model: str
    served_model_name: str
    endpoint: str
    endpoints: dict[str, str]
    pid: int | None
    uptime_s: float | None
    state: str  # running | starting | failed (some process died) | exited
    health: str  # ok | failing: ... | -
    healthy: bool
    log: str
    device: str
    processes: list[dict[str, object]]
    engine: dict[str, str] = field(default_factory=dict)  # entry point and version that runs it
    mode: str = "detached"  # detached (up) | foreground (run)
    restarts: int = 0
    last_exit: str | None = None


def status(*, probe: bool = True) -> list[Status]:
    rows = []
    for record in state.list_all():
        alive = [pid_alive(p) for p in record.processes]
        dead = [p.role for p, a in zip(record.processes, alive, strict=True) if not a]
        running = record.external or (bool(alive) and all(alive))
        if record.status in ("starting", "restarting") and running:
            st = record.status
        elif running:
            st = "running"
        elif any(alive):
            st = "failed"  # part of it died: e.g. FastChat's worker, with controller and API up
        else:
            st = "exited"
        last_exit = record.last_exit
        if dead and not last_exit and record.mode == "detached":
            # Nobody waits on a detached process (init reaps it), so its exit code is lost;
            # `modelserve run` supervises and records it.
            last_exit = f"the {', '.join(dead)} process exited (exit code not recorded: started detached)"
        if st == "failed":
            health_text, healthy = f"failing: the {', '.join(dead)} process exited", False
        elif probe and st == "running":
            res = health.check_all(_probes(record, cheap=True), timeout=3.0)
            health_text, healthy = ("ok", True) if res.ok else (f"failing: {res.detail}", False)
        else:
            health_text, healthy = "-", False
        rows.append(
            Status(
                name=record.name,
                backend=record.backend,
                model=record.model,
                served_model_name=record.served_model_name,
                endpoint=record.base_url,
                endpoints=record.endpoints,
                pid=record.pid,
                uptime_s=round(time.time() - record.started_at, 1) if st != "exited" else None,
                state=st,
                health=health_text,
                healthy=healthy,
                log=record.main_log,
                device=record.device,
                processes=[
                    {"role": p.role, "pid": p.pid, "alive": a, "log": p.log}
                    for p, a in zip(record.processes, alive, strict=True)
                ],
                engine=record.engine,
                mode=record.mode,
                restarts=record.restarts,
                last_exit=last_exit,
            )
        )
    return rows


def health_of(target: str, timeout: float = 10.0) -> health.ProbeResult:
    """Health of a deployment NAME, or of a server URL (probe kind guessed from the URL)."""
    if "://" in target:
        return health.check_all(_url_probes(target), timeout=timeout)
    record = state.load(target)
    return health.check_all(_probes(record), timeout=timeout)


def _url_probes(url: str) -> list[ReadinessProbe]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    key = os.environ.get("MODELSERVE_API_KEY")
    path = parts.path.rstrip("/")
    if path.endswith("/llm"):
        return [ReadinessProbe("post-llm", base, None, key)]
    if path.startswith("/api"):
        return [ReadinessProbe("ollama-version", base)]
    if path.endswith("/v1"):
        return [ReadinessProbe("http-ok", base, None, key, "/v1/models")]
    return [ReadinessProbe("http-ok", base, None, key, path or "/health")]


def log_path(name: str, process: str | None = None) -> Path:
    record = state.load(name)
    if process is None:
        return Path(record.main_log)
    for p in record.processes:
        if p.role == process:
            return Path(p.log)
    roles = ", ".join(p.role for p in record.processes)
    raise ModelserveError(f"{name} has no process {process!r}", f"pick one of: {roles}")


def follow(path: Path, *, lines: int, stop: Callable[[], bool], sleep: Callable[[float], None] = time.sleep) -> Iterator[str]:
    """Yield the last ``lines`` lines, then new lines as they are written, until ``stop()``.

    Follows a rotated log (a new file at the same path) like ``tail -F``.
    """
    text = health.tail(path, lines)
    if text:
        yield text + "\n"
    fh = path.open("r", errors="replace") if path.exists() else None
    if fh is not None:
        fh.seek(0, 2)
    try:
        while not stop():
            chunk = fh.read() if fh is not None else ""
            if chunk:
                yield chunk
                continue
            try:
                if fh is None or os.stat(path).st_ino != os.fstat(fh.fileno()).st_ino:
                    if fh is not None:
                        fh.close()
                    fh = path.open("r", errors="replace")
                    continue
            except FileNotFoundError:
                pass
            sleep(0.25)
    finally:
        if fh is not None:
            fh.close()
