"""Which backend, on which devices, run by which interpreter: decided once per command.

`-b auto` asks every registered backend that declares ``auto`` (``backends.automatic``) and
serves the deployment's task in priority order, and takes the first whose engine is installed;
the reason it gives is printed in the summary. The task is the deployment's ``task:``, else
what the model folder declares (``launcher.models.task``), else generate. Engine inspection
(``Backend.inspect``) can spawn an interpreter, so :class:`Engines` asks each backend once per
interpreter and remembers the answer for the rest of the command.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import backends
from backends.base import Backend, EngineInfo
from launcher import devices, models
from launcher.core.deployment import Deployment
from launcher.core.errors import BackendUnavailable, ConfigError, ModelserveError
from launcher.core.names import Task
from launcher.lifecycle import envs
from launcher.models.task import DEFAULT_TASK_REASON, declared_task


@dataclass
class Engines:
    """Engine inspections of this command, by (backend, interpreter)."""

    answers: dict[tuple[str, str], EngineInfo] = field(default_factory=dict)

    def inspect(self, backend: Backend, python: str, deployment: Deployment | None) -> EngineInfo:
        key = (backend.name, python)
        if key not in self.answers:
            local = python == sys.executable
            self.answers[key] = backend.inspect(python=python, deployment=deployment, local=local)
        return self.answers[key]

    def python_for(self, dep: Deployment, backend: Backend) -> str:
        """The interpreter that runs the engine: ``python:`` when given; else this one when it
        has the engine; else the backend's managed environment when one was built; else this
        one (and the availability check then says what is missing and how to get it)."""
        if dep.python:
            return dep.python
        if backend.env_spec is None or self.inspect(backend, sys.executable, dep).available.ok:
            return sys.executable
        return envs.ready_python(backend.env_spec.name) or sys.executable


@dataclass
class Choice:
    backend: Backend
    reason: str
    devices: devices.DevicePlan
    visible: int = 0  # GPUs visible to this process (for "try --gpus N" hints)
    task: Task = "generate"
    task_reason: str = "the default"


def choose(dep: Deployment, engines: Engines, gpus: list[devices.Gpu] | None = None) -> Choice:
    """Pick the task, the backend and devices, and say why (the summary prints the reasons)."""
    asked = backends.get(dep.backend) if dep.backend != "auto" else None
    task, why = decide_task(dep, asked)
    if dep.ray is not None:
        choice = _choose_on_ray(dep)
        _check_task(choice.backend, task, why)
        return Choice(choice.backend, choice.reason, choice.devices, task=task, task_reason=why)
    gpus = devices.discover() if gpus is None else gpus
    if asked is not None:
        _check_task(asked, task, why)
        return Choice(asked, f"{asked.name} (asked for)", devices.plan(dep.device, gpus, count=dep.gpus), len(gpus),
                      task, why)  # fmt: skip
    dplan = devices.plan(dep.device, gpus, count=dep.gpus)
    candidates = [b for b in backends.automatic(dplan.kind) if task in b.capabilities.tasks]
    skipped: list[str] = []
    for backend in candidates:
        found = engines.inspect(backend, engines.python_for(dep, backend), dep).available
        if found.ok:
            return Choice(backend, _auto_reason(backend, dplan, found.version, skipped), dplan, len(gpus), task, why)
        skipped.append(f"{backend.name} is not installed ({found.reason})")
    if not candidates:
        raise backends_unavailable(dplan.kind if task == "generate" else f"task {task} on {dplan.kind}")
    # None is installed: take the last resort anyway; its availability check names the fix.
    last = candidates[-1]
    return Choice(last, _auto_reason(last, dplan, None, skipped), dplan, len(gpus), task, why)


def decide_task(dep: Deployment, backend: Backend | None = None) -> tuple[Task, str]:
    """The deployment's task and why: asked for, declared by the model (an alias, or its folder
    read through ``backend``'s resolution when one was named), or generate by default."""
    if dep.task is not None:
        return dep.task, "asked for"
    try:
        if dep.model in models.ALIASES:
            path = None  # the alias says it, prepared or not
        elif backend is not None:
            path = backend.resolve_model(dep, prepare=False, progress=_quiet).path
        else:
            path = models.resolve(dep.model, prepare=False).path
    except ModelserveError:  # a model that cannot be found is reported later, by the backend that runs it
        path = None
    found = declared_task(dep.model, path)
    if found is not None:
        return found.task, found.reason
    return "generate", DEFAULT_TASK_REASON


def _quiet(msg: str) -> None:
    """Resolution for the task decision reports nothing: `up` resolves again, and reports then."""


def _check_task(backend: Backend, task: Task, why: str) -> None:
    if task in backend.capabilities.tasks:
        return
    able = [name for name in backends.names() if task in _tasks_of(name)]
    reason = backend.capabilities.why_not(task)
    raise ConfigError(f"backend {backend.name} does not serve task {task} ({why})" + (f": {reason}" if reason else ""),
                      f"use -b {' or -b '.join(able)}" if able else "no registered backend serves it")  # fmt: skip


def _tasks_of(name: str) -> tuple[Task, ...]:
    try:
        return backends.get(name).capabilities.tasks
    except Exception:  # a broken plugin must not hide the others from the hint
        return ()


def _choose_on_ray(dep: Deployment) -> Choice:
    """With ``ray:`` the GPUs are the cluster's, placed by Ray: none is picked on this machine
    (the pre-flight check counts the cluster's), and only a multi-node backend can run."""
    if dep.ray is None:
        raise ValueError("_choose_on_ray() needs a deployment with ray:")
    if dep.device not in ("auto", "cuda"):
        raise ConfigError(f"device: {dep.device} picks this machine's devices, but ray: spreads the model over the "
                          "cluster's GPUs", "drop device (or write cuda) and set gpus: N, the GPUs of each node")  # fmt: skip
    backend = backends.on_ray(dep.backend)
    if backend is None:
        raise backends_unavailable("a Ray cluster")
    where = dep.ray.address or "auto"
    plan = devices.DevicePlan("cuda", (), f"Ray cluster {where}: {dep.ray.nodes} node(s) x {dep.gpus or 1} GPU(s)")
    why = "asked for" if dep.backend != "auto" else "ray: given; the backend that runs across nodes"
    return Choice(backend, f"{backend.name} ({why})", plan)


def _auto_reason(backend: Backend, dplan: devices.DevicePlan, version: str | None, skipped: list[str]) -> str:
    if dplan.kind == "cuda" and not skipped and version:
        return f"{len(dplan.gpus)} GPU(s) and {version} installed: {backend.name}"
    if dplan.kind == "cuda" and skipped:
        return f"GPU found but {'; '.join(skipped)}: {backend.name}"
    where = "on CPU" if dplan.kind == "cpu" else f"on {dplan.describe()}"
    return f"{dplan.reason}: {backend.name} {where}"


def backends_unavailable(kind: str) -> BackendUnavailable:
    return BackendUnavailable(f"no registered backend is chosen automatically for {kind}",
                              "name one with -b (see `modelserve backends`)")  # fmt: skip
