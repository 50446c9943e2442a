"""Everything `up` decides before it starts anything; `up --dry-run` prints it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from backends.base import PlanContext
from launcher import devices
from launcher.core.deployment import Deployment
from launcher.core.errors import BackendUnavailable, DeviceError
from launcher.core.launch import LaunchPlan
from launcher.core.model_ref import ResolvedModel
from launcher.lifecycle import fronted, ray_cluster
from launcher.lifecycle.choose import Choice, Engines, choose
from launcher.process import ports
from launcher.store import paths

Report = Callable[[str], None]


@dataclass
class Prepared:
    choice: Choice
    python: str
    model: ResolvedModel
    launch: LaunchPlan
    fit: devices.FitVerdict | None


def _quiet(msg: str) -> None:
    """The default report sink: the CLI passes one that prints."""


def prepare(
    dep: Deployment,
    *,
    report: Report = _quiet,
    dry_run: bool = False,
    engines: Engines | None = None,
    choice: Choice | None = None,
    running: str | None = None,
) -> Prepared:
    """Choose, resolve the model, check that it fits, and plan.

    A dry run converts nothing and raises for nothing it can still show (a missing engine, a
    model that will not fit): it reports them instead. ``running``: a server to reuse.
    """
    engines = engines or Engines()
    choice = choice or choose(dep, engines)
    backend = choice.backend
    if dry_run and running is None:
        running = backend.find_running(dep)
    model = backend.resolve_model(dep, prepare=not dry_run, progress=report)
    dtype = devices.serving_dtype(dep.dtype, choice.devices.kind)
    estimate = None
    if model.path is not None and Path(model.path).is_dir():
        estimate = devices.estimate_memory(model.path, dtype=dtype, max_model_len=dep.max_model_len)
    fit = None
    python = engines.python_for(dep, backend)
    if dep.ray is not None:  # the cluster's GPUs, counted by Ray
        fit = ray_cluster.preflight(dep, python, estimate, dry_run=dry_run)
    elif estimate is not None and choice.devices.kind == "cuda":
        fit = _gpu_fit(dep, choice, estimate, model)
    elif estimate is not None and running is None:  # on the CPU the weights and KV live in host RAM
        fit = devices.check_host_fit(estimate, devices.memory_available(), dtype=dtype)
    if fit is not None and not fit.fits and not dep.force and not dry_run:
        raise DeviceError(fit.message, fit.hint)
    engine = engines.inspect(backend, python, dep)
    found = engine.available
    if not found.ok and not dry_run and running is None:
        raise BackendUnavailable(f"backend {backend.name} cannot run here: {found.reason}", backend.install_hint)
    ctx = PlanContext(
        python=python,
        log_dir=paths.deployment_dir(dep.deployment_name) / "logs",
        free_port=ports.free_port,
        cpu_count=devices.cpu_count(),
        engine=engine.facts,
        memory_available=devices.memory_available(),
        model_bytes=estimate.weights if estimate else 0,
        running=running,
        checkpoint_dtype=devices.checkpoint_dtype(model.path) if model.path else None,
    )
    # The plan serves the task decided above (detected from the model when the spec names none).
    planned = dep.model_copy(update={"task": choice.task})
    launch = fronted.plan(backend, deployment=planned, model=model, devices=choice.devices, ctx=ctx)
    if not found.ok and running is None:
        launch = replace(launch, notes=(*launch.notes, f"cannot start here: {found.reason}"))
    return Prepared(choice, python, model, launch, fit)


def _gpu_fit(dep: Deployment, choice: Choice, estimate: devices.MemoryEstimate,
             model: ResolvedModel) -> devices.FitVerdict:  # fmt: skip
    use = choice.backend.gpu_use(choice.devices, dep)
    fit = devices.check_fit(estimate, use.devices, utilization=use.claims,
                            visible=choice.visible if use.splits else None)  # fmt: skip
    problem = devices.tensor_parallel_problem(model.path or "", use.devices.tensor_parallel)
    if problem:
        return devices.FitVerdict(False, problem, "pick a --gpus count that divides the head counts")
    return fit
