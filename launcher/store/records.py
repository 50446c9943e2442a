"""On-disk records of deployments: ``$MODELSERVE_HOME/deployments/NAME/state.json``.

A record is written atomically (temp file + rename, mode 0600: it may hold the API key) and is
the only link between ``up`` and later ``status``/``down``/``logs`` calls. Process identity is
(pid, create_time), so a recycled pid is never mistaken for our server.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launcher.core.errors import AlreadyRunning, DeploymentNotFound, StateError
from launcher.store import paths
from launcher.store.files import LockTimeout, write_atomic
from launcher.store.files import locked as file_locked

if TYPE_CHECKING:
    from launcher.core.launch import ClientEndpoint
    from launcher.core.probe import Probe

STATE_VERSION = 1
FRONT_ROLE = "front"  # the translating front's process (lifecycle.fronted)
MARKER_ENV = "MODELSERVE_DEPLOYMENT_ID"


@dataclass
class ProcessRecord:
    role: str
    pid: int
    pgid: int
    create_time: float
    argv: list[str]
    log: str


@dataclass
class ClientRecord:
    """An agent config file ``up`` merged entries into (so ``down --forget-config`` can undo it)."""

    kind: str  # "agentscope"
    path: str
    names: list[str]


@dataclass
class DeploymentRecord:
    name: str
    backend: str
    api: str
    model: str  # as the user gave it
    model_path: str | None
    served_model_name: str
    host: str
    port: int
    base_url: str
    endpoints: dict[str, str]
    marker: str  # value of MODELSERVE_DEPLOYMENT_ID in every process of the deployment
    started_at: float  # epoch seconds
    log_dir: str
    processes: list[ProcessRecord] = field(default_factory=list)
    probes: list[dict[str, Any]] = field(default_factory=list)
    clients: list[ClientRecord] = field(default_factory=list)
    api_key: str | None = None
    device: str = "cpu"
    notes: list[str] = field(default_factory=list)
    status: str = "starting"  # starting | ready
    external: bool = False  # reused a server we did not start: never stopped by `down`
    ready_seconds: float | None = None
    stop_timeout: float = 10.0
    engine: dict[str, str] = field(default_factory=dict)  # entry point / version that runs it
    # What agent clients need (backends.base.ClientEndpoint as dicts): `modelserve config` renders them.
    client_endpoints: list[dict[str, Any]] = field(default_factory=list)
    restarts: int = 0  # by `modelserve run` (foreground supervision)
    last_exit: str | None = None  # why a process last ended, when known
    mode: str = "detached"  # detached (`up`) | foreground (`modelserve run`)
    agentscope: dict[str, Any] = field(default_factory=dict)  # the AgentScopeSettings up wrote with
    supervisor_pid: int | None = None  # the `modelserve run` process, when foreground
    tools: str = ""  # how it serves tool calls (LaunchPlan.tools)
    surfaces: dict[str, str] = field(default_factory=dict)  # messages/count_tokens/responses: native|translated|no
    fleet: str | None = None  # a fleet member: the fleet (its gateway's record) it belongs to
    members: list[str] = field(default_factory=list)  # a fleet's gateway: its members' deployment names
    # What `restart` starts again: the resolved Deployment (its fields as JSON), or a fleet's file.
    spec: dict[str, Any] = field(default_factory=dict)
    spec_file: str | None = None
    telemetry: dict[str, str] = field(default_factory=dict)  # core.telemetry.Telemetry: what the dashboard reads
    task: str | None = None  # what the model does: generate | embed | rerank (None: not recorded)

    version: int = STATE_VERSION

    # The two methods below import where used: `status` reads records without needing either.
    def endpoints_for_clients(self) -> list[ClientEndpoint]:
        from launcher.core.launch import ClientEndpoint

        return [ClientEndpoint(**e) for e in self.client_endpoints]

    def readiness_probes(self, *, cheap: bool = False) -> list[Probe]:
        """The probes `up` passed, to ask again. ``cheap``: leave out the ones that generate
        tokens (status asks many deployments), unless nothing else is left."""
        from launcher.core.probe import from_dict

        probes = [from_dict(p) for p in self.probes]
        light = [p for p in probes if not p.generates]
        return (light or probes) if cheap else probes

    @property
    def main_process(self) -> ProcessRecord | None:
        """The engine's last process: the one that serves (a translating front, when there is one,
        starts after it and only relays)."""
        serving = [p for p in self.processes if p.role != FRONT_ROLE] or self.processes
        return serving[-1] if serving else None

    @property
    def pid(self) -> int | None:
        main = self.main_process
        return main.pid if main else None

    @property
    def main_log(self) -> str:
        main = self.main_process
        return main.log if main else str(Path(self.log_dir) / "server.log")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeploymentRecord:
        data = dict(data)
        data["processes"] = [ProcessRecord(**p) for p in data.get("processes", [])]
        data["clients"] = [ClientRecord(**c) for c in data.get("clients", [])]
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def state_file(name: str) -> Path:
    return paths.deployment_dir(name) / "state.json"


def save(record: DeploymentRecord) -> None:
    target = state_file(record.name)
    with writable(target.parent):
        target.parent.mkdir(parents=True, exist_ok=True)
        # 0600 whatever was there before: the record may hold the API key.
        write_atomic(target, record.to_json(), mode=0o600, keep_mode=False)


@contextlib.contextmanager
def writable(folder: Path) -> Iterator[None]:
    """OS errors writing modelserve's own state become one clear StateError (the write itself is
    atomic: a failure leaves the old file, or none, never half of one)."""
    try:
        yield
    except OSError as exc:
        raise StateError(
            f"cannot write modelserve's state in {folder}: {exc.strerror or exc}",
            f"make {paths.home()} a writable folder with free space, or set MODELSERVE_HOME to one",
        ) from None


def load(name: str) -> DeploymentRecord:
    path = state_file(name)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        known = [r.name for r in list_all()]
        raise DeploymentNotFound(
            f"no deployment named {name!r}",
            f"running: {', '.join(known)}" if known else "start one with `modelserve up -m MODEL`",
        ) from None
    except ValueError as exc:
        raise DeploymentNotFound(f"the state file {path} is damaged: {exc}", f"remove {path.parent}") from None
    return DeploymentRecord.from_dict(data)


def exists(name: str) -> bool:
    return state_file(name).exists()


def list_all(damaged: list[Path] | None = None) -> list[DeploymentRecord]:
    """Every readable record; the paths of unreadable ones go to ``damaged`` (one bad file must
    not hide the others)."""
    root = paths.deployments_dir()
    if not root.is_dir():
        return []
    records = []
    for path in sorted(root.glob("*/state.json")):
        try:
            records.append(DeploymentRecord.from_dict(json.loads(path.read_text())))
        except (ValueError, TypeError, KeyError, OSError):
            if damaged is not None:
                damaged.append(path)
    return records


def remove(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        state_file(name).unlink()


@contextlib.contextmanager
def locked(name: str, timeout: float = 5.0) -> Iterator[None]:
    """Serialise up/down of one deployment name across processes."""
    root = paths.deployments_dir()
    lock = contextlib.ExitStack()
    try:
        with writable(root):
            root.mkdir(parents=True, exist_ok=True)
            lock.enter_context(file_locked(root / f".{name}.lock", timeout=timeout))
    except LockTimeout:
        raise AlreadyRunning(
            f"another modelserve command is starting or stopping {name!r} right now",
            "wait for it to finish, or use another --name",
        ) from None
    with lock:
        yield
