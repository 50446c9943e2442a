"""The backend contract: a pure ``plan()`` from a Deployment to processes and probes.

A backend never starts anything. It turns (deployment, resolved model, device plan, context)
into a :class:`LaunchPlan`: ordered :class:`ProcessSpec` s with argv, env and readiness probes.
Only ``launcher.supervisor`` starts processes, so every backend is testable without its engine.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shlex
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from launcher.devices import DevicePlan
    from launcher.models import ResolvedModel
    from launcher.spec import Deployment

ApiKind = Literal["openai", "post", "ollama"]
ProbeKind = Literal[
    "http-ok", "openai-models", "openai-chat", "post-llm", "ollama-version", "ollama-model",
    "fastchat-controller", "fastchat-model",
]  # fmt: skip


@dataclass(frozen=True)
class ReadinessProbe:
    """One check a client-shaped request must pass. ``url`` is the server's base URL."""

    kind: ProbeKind
    url: str
    model: str | None = None
    api_key: str | None = None
    path: str = ""

    def describe(self) -> str:
        what = {
            "http-ok": f"GET {self.path or '/'} answers 200",
            "openai-models": f"/v1/models lists {self.model!r}",
            "openai-chat": "a 1-token /v1/chat/completions succeeds",
            "post-llm": "a 1-token POST /llm/ returns the AgentScope envelope",
            "ollama-version": "/api/version answers",
            "ollama-model": f"/api/tags lists {self.model!r}",
            "fastchat-controller": "the FastChat controller answers POST /list_models",
            "fastchat-model": f"a worker has registered {self.model!r} with the controller",
        }[self.kind]
        return f"{what} ({self.url})"


@dataclass(frozen=True)
class ProcessSpec:
    """One process of a deployment. ``env`` is added to the launcher's environment."""

    role: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    ready: tuple[ReadinessProbe, ...] = ()
    cwd: str | None = None
    # Names in env whose values are secrets (API keys): never printed, rendered as "***".
    secret_env: frozenset[str] = frozenset()

    def command_line(self) -> str:
        return shlex.join(self.argv)


@dataclass(frozen=True)
class ClientEndpoint:
    """What an agent client needs to reach the server; clients.py renders it per client."""

    kind: Literal["post_api_chat", "openai_chat", "ollama_chat"]
    url: str  # /llm/ URL, OpenAI base URL ending in /v1, or the Ollama host URL
    model_name: str
    api_key: str | None = None


@dataclass(frozen=True)
class LaunchPlan:
    backend: str
    api: ApiKind
    served_model_name: str
    processes: tuple[ProcessSpec, ...]
    endpoints: Mapping[str, str]  # name -> URL, printed in the summary
    clients: tuple[ClientEndpoint, ...] = ()
    notes: tuple[str, ...] = ()  # decisions worth saying out loud ("dtype float32: CPU")
    # True when the plan reuses a server that already runs (nothing to start or stop).
    external: bool = False
    # What runs the engine, for status ("entry": "python -m vllm...", "version": ...).
    engine: Mapping[str, str] = field(default_factory=dict)
    # Checked after Backend.after_start() (e.g. Ollama: the model is present once pulled).
    final_probes: tuple[ReadinessProbe, ...] = ()


@dataclass(frozen=True)
class Availability:
    ok: bool
    version: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class PlanContext:
    """Everything impure that a plan needs, decided by the launcher beforehand."""

    python: str
    log_dir: Path
    free_port: Callable[[], int]
    cpu_count: int = 1
    engine: Mapping[str, Any] = field(default_factory=dict)  # Backend.inspect(python)
    memory_available: int = 0  # host RAM available now, bytes
    model_bytes: int = 0  # weights at the serving dtype, bytes (0: unknown)
    running: str | None = None  # Backend.find_running(): a server to reuse instead of starting one
    checkpoint_dtype: str | None = None  # what the model folder's weights are stored in


class Backend(ABC):
    name: ClassVar[str]
    api: ClassVar[ApiKind]
    supports_cpu: ClassVar[bool] = True
    supports_gpu: ClassVar[bool] = True
    # Python distributions the engine needs in the interpreter that runs it.
    requires: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str] = ""
    # The managed environment (`modelserve env create NAME`) that carries this engine, if any.
    env_name: ClassVar[str | None] = None
    # Splits one model across several GPUs (tensor parallel); else it uses the first GPU only.
    tensor_parallel: ClassVar[bool] = False
    # Claims this share of each GPU's total memory at start (vLLM's --gpu-memory-utilization).
    claims_gpu_share: ClassVar[bool] = False

    def available(self, *, python: str | None = None, deployment: Deployment | None = None) -> Availability:
        """Is the engine installed (in ``python``, default: this interpreter)? Never imports it.
        ``deployment`` when there is one (it may name the engine's executable)."""
        if python is not None:
            return probe_distributions(python, self.requires)
        missing = [d for d in self.requires if not _has_distribution(d)]
        if missing:
            return Availability(False, None, f"not installed here: {', '.join(missing)}")
        return Availability(True, _version(self.requires[0]) if self.requires else None)

    def inspect(self, python: str, deployment: Deployment | None = None) -> dict[str, Any]:
        """Facts about the installed engine that plan() needs (entry point, version); no imports."""
        return {}

    def resolve_model(
        self, deployment: Deployment, *, prepare: bool, progress: Callable[[str], None]
    ) -> ResolvedModel:
        """What ``-m`` names for this engine (default: folder, HF cache, ModelScope cache, alias)."""
        from launcher import models

        return models.resolve(deployment.model, prepare=prepare, progress=progress)

    def find_running(self, deployment: Deployment) -> str | None:
        """A server of this engine that already answers where the deployment would bind (to be
        reused, never stopped), described for the summary; None when there is none."""
        return None

    def after_start(self, *, deployment: Deployment, model: ResolvedModel, launch: LaunchPlan,
                    report: Callable[[str], None], deadline: float) -> None:  # fmt: skip
        """Work once the processes answer and before the final probes (e.g. pull the model).
        ``deadline`` is a time.monotonic() value; raise a ModelserveError to fail `up`."""
        return None

    @abstractmethod
    def plan(
        self, *, deployment: Deployment, model: ResolvedModel, devices: DevicePlan, ctx: PlanContext
    ) -> LaunchPlan: ...


def _has_distribution(name: str) -> bool:
    try:
        importlib.metadata.version(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return importlib.util.find_spec(name.replace("-", "_")) is not None


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def probe_distributions(python: str, names: tuple[str, ...]) -> Availability:
    """Ask another interpreter which of ``names`` it has, without importing them."""
    import json
    import subprocess

    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: out[n] = None\n"
        "print(json.dumps(out))\n"
    )
    try:
        proc = subprocess.run([python, "-c", code, *names], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Availability(False, None, f"cannot run {python}: {exc}")
    if proc.returncode != 0:
        return Availability(False, None, f"{python} failed: {proc.stderr.strip()[-200:]}")
    found: dict[str, Any] = json.loads(proc.stdout)
    missing = [n for n, v in found.items() if v is None]
    if missing:
        return Availability(False, None, f"not installed in {python}: {', '.join(missing)}")
    return Availability(True, found[names[0]] if names else None)


def render_args(args: Mapping[str, Any]) -> list[str]:
    """``{"max_model_len": 2048, "enforce_eager": True}`` -> ``--max-model-len 2048 --enforce-eager``.

    Keys may be given as the engine spells them (``--max-model-len``, ``max-model-len``) or with
    underscores; False and None drop the flag; lists repeat it; dicts are passed as JSON.
    """
    import json

    out: list[str] = []
    for key, value in args.items():
        flag = key if key.startswith("-") else "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            out.append(flag)
        elif isinstance(value, list | tuple):
            for item in value:
                out += [flag, str(item)]
        elif isinstance(value, dict):
            out += [flag, json.dumps(value)]
        else:
            out += [flag, str(value)]
    return out
