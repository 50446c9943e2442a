"""`status`, `health` and `logs`: what runs, whether it answers, and where its log is."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from launcher.core.errors import ModelserveError
from launcher.core.probe import Probe, ProbeResult
from launcher.process.liveness import deployment_state
from launcher.process.readiness import check_all
from launcher.process.table import pid_alive
from launcher.store import records


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
    state: str  # running | starting | restarting (`run` brings it back) | failed (some process died) | exited
    health: str  # ok | failing: ... | -
    healthy: bool
    log: str
    device: str
    processes: list[dict[str, object]]
    engine: dict[str, str] = field(default_factory=dict)  # entry point and version that runs it
    mode: str = "detached"  # detached (up) | foreground (run)
    restarts: int = 0
    last_exit: str | None = None
    fleet: str | None = None  # a fleet member: its fleet
    members: list[dict[str, object]] = field(default_factory=list)  # a fleet: what its gateway says of each member


def status(*, probe: bool = True, damaged: list[Path] | None = None) -> list[Status]:
    """Every deployment's status; the state files that cannot be read go to ``damaged``."""
    return [_status_of(record, probe) for record in records.list_all(damaged)]


def _status_of(record: records.DeploymentRecord, probe: bool) -> Status:
    alive = [pid_alive(p) for p in record.processes]
    st, dead = deployment_state(record)
    last_exit = record.last_exit
    if dead and not last_exit and record.mode == "detached":
        # Nobody waits on a detached process (init reaps it), so its exit code is lost;
        # `modelserve run` supervises and records it.
        last_exit = f"the {', '.join(dead)} process exited (exit code not recorded: started detached)"
    if st == "failed":
        health_text, healthy = f"failing: the {', '.join(dead)} process exited", False
    elif probe and st == "running":
        res = _recheck(record, cheap=True, timeout=3.0)
        health_text, healthy = ("ok", True) if res.ok else (f"failing: {res.detail}", False)
    else:
        health_text, healthy = "-", False
    return Status(
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
        processes=[{"role": p.role, "pid": p.pid, "alive": a, "log": p.log}
                   for p, a in zip(record.processes, alive, strict=True)],  # fmt: skip
        engine=record.engine,
        mode=record.mode,
        restarts=record.restarts,
        last_exit=last_exit,
        fleet=record.fleet,
        members=_members_of(record) if record.members and probe and st == "running" else [],
    )


def _members_of(record: records.DeploymentRecord) -> list[dict[str, object]]:
    """The gateway's own account of its members (GET /fleet): loaded, idle for, requests, errors."""
    import json
    from urllib import request

    req = request.Request(record.base_url + "/fleet")
    if record.api_key:
        req.add_header("Authorization", f"Bearer {record.api_key}")
    try:
        with request.urlopen(req, timeout=3.0) as resp:
            members: list[dict[str, object]] = json.loads(resp.read())["members"]
            return members
    except (OSError, ValueError, KeyError):
        return []


def _recheck(record: records.DeploymentRecord, *, cheap: bool, timeout: float) -> ProbeResult:
    try:
        probes = record.readiness_probes(cheap=cheap)
    except ValueError as exc:  # a probe class that is gone (a removed plugin, an older record)
        return ProbeResult(False, f"cannot ask again: {exc}")
    return check_all(probes, timeout=timeout)


def health_of(target: str, timeout: float = 10.0) -> ProbeResult:
    """Health of a deployment NAME, or of a server URL (probe chosen from the URL's path)."""
    if "://" in target:
        return check_all(_url_probes(target), timeout=timeout)
    return _recheck(records.load(target), cheap=False, timeout=timeout)


def _url_probes(url: str) -> list[Probe]:
    """The APIs every kind of server here shares (POST /llm/, OpenAI /v1, an open GET) first;
    another path is asked of each backend's ``url_probe`` (Ollama's /api), then probed as a GET."""
    # Imported here: http.client (with ssl and email) is most of what `status` would load otherwise.
    from backends.probes import HttpOk, PostLlmAnswers

    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    key = os.environ.get("MODELSERVE_API_KEY")
    path = parts.path.rstrip("/")
    if path.endswith("/llm"):
        return [PostLlmAnswers(base, key)]
    if path.endswith("/v1"):
        return [HttpOk(base, key, path="/v1/models")]
    if path in ("", "/health"):
        return [HttpOk(base, key, path="/health")]
    return [_backend_url_probe(base, path, key) or HttpOk(base, key, path=path)]


def _backend_url_probe(base: str, path: str, key: str | None) -> Probe | None:
    """A probe of the API ``path`` belongs to, when a backend claims it. Loads every backend
    class (pydantic): only for a path the shared probes do not know."""
    import backends

    return next((p for b in backends.loaded() if (p := b.url_probe(base, path, key)) is not None), None)


def log_path(name: str, process: str | None = None) -> Path:
    record = records.load(name)
    if process is None:
        return Path(record.main_log)
    for p in record.processes:
        if p.role == process:
            return Path(p.log)
    roles = ", ".join(p.role for p in record.processes)
    raise ModelserveError(f"{name} has no process {process!r}", f"pick one of: {roles}")
