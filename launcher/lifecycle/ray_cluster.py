"""The Ray cluster a deployment's ``ray:`` section names: the `ray start` commands that make it
(`modelserve ray head|worker`, printed, or run with --start), `ray stop`, and the pre-flight
check `up` runs against the live cluster before it starts the engine. The layout (GPUs per node,
nodes) is the multi-node backend's (``Backend.node_layout``).

Ray runs from the engine's interpreter (``python:``, else the managed vLLM environment): the
``ray`` script beside it starts the nodes, and the same interpreter reads the cluster, so the
node and the driver speak the same Ray version.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import backends
from backends.base import Backend, NodeLayout
from launcher import devices
from launcher.core.deployment import Deployment
from launcher.core.errors import BackendUnavailable, ConfigError, DeviceError, ModelserveError
from launcher.devices import ray_inventory
from launcher.lifecycle.choose import Engines, choose
from launcher.process.childio import run_streaming

Role = Literal["head", "worker", "stop"]
Report = Callable[[str], None]
START_DEADLINE = 120.0  # seconds for `ray start` / `ray stop` (a head starts in ~4 s on 2 cores)
PROBE_DEADLINE = 60.0  # seconds to join the cluster and read its nodes
GIB = 1024**3


@dataclass(frozen=True)
class RayCommand:
    role: Role
    argv: tuple[str, ...]
    env: Mapping[str, str]  # the deployment's env: (RAY_TMPDIR, NCCL_*, ...), given to the node

    def text(self) -> str:
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        return (prefix + " " if prefix else "") + shlex.join(self.argv)


@dataclass(frozen=True)
class RayRun:
    command: RayCommand
    returncode: int
    output: str


def layout(dep: Deployment, env: Mapping[str, str] | None = None) -> NodeLayout:
    """``dep``'s layout on the cluster, as the backend that runs it across nodes lays it out.
    ``env``: what the engine starts with (default: this environment)."""
    backend = backends.on_ray(dep.backend)
    if backend is None:
        raise BackendUnavailable("no registered backend runs across Ray nodes", "see `modelserve backends`")
    return backend.node_layout(dep, env=os.environ if env is None else env)


def commands(dep: Deployment, ray: str) -> dict[Role, RayCommand]:
    """The `ray start` commands for the head and each worker node, and `ray stop` (pure).
    Every node gives the cluster ``gpus`` GPUs: one tensor-parallel group per node."""
    if dep.ray is None:
        raise ConfigError("this deployment has no ray: section", "add `ray: {address: HEAD:6379, nodes: 2}`")
    gpus = str(layout(dep).gpus_per_node)
    head = (ray, "start", "--head", f"--port={dep.ray.port}", f"--num-gpus={gpus}", "--disable-usage-stats")
    address = dep.ray.address if dep.ray.address not in (None, "auto") else "HEAD_IP:" + str(dep.ray.port)
    worker = (ray, "start", f"--address={address}", f"--num-gpus={gpus}")
    env = dict(dep.env)
    return {"head": RayCommand("head", head, env), "worker": RayCommand("worker", worker, env),
            "stop": RayCommand("stop", (ray, "stop"), env)}  # fmt: skip


def ray_script(python: str, backend: Backend) -> str:
    """The ``ray`` command installed beside ``python``."""
    script = Path(python).parent / "ray"
    if not script.exists():
        managed = f" (the managed CUDA env has it: `modelserve env create {backend.env_spec.name} --recreate`)" \
            if backend.env_spec else ""  # fmt: skip
        raise BackendUnavailable(f"ray is not installed beside {python} (no {script})",
                                 f"`{python} -m pip install ray`{managed}, or set python: to an interpreter that "
                                 "has it")  # fmt: skip
    return str(script)


def engine(dep: Deployment) -> tuple[Backend, str]:
    """The backend that runs ``dep`` and the interpreter that runs it."""
    engines = Engines()
    backend = choose(dep, engines).backend
    return backend, engines.python_for(dep, backend)


def engine_python(dep: Deployment) -> str:
    return engine(dep)[1]


def command(dep: Deployment, role: Role, *, report: Report | None = None) -> RayCommand:
    """The command for ``role``, with the real ``ray`` of the engine's interpreter. With
    ``report`` (printing, not running) a missing ray is reported and ``ray`` from PATH shown."""
    try:
        backend, python = engine(dep)
        script = ray_script(python, backend)
    except BackendUnavailable as exc:
        if report is None:
            raise
        report(f"{exc.message}: showing `ray` from PATH ({exc.hint})")
        script = "ray"
    found = commands(dep, script)[role]
    if role == "worker" and dep.ray is not None and dep.ray.address in (None, "auto"):
        raise ConfigError("ray.address: a worker joins the head at HOST:PORT, and none is given",
                          "set ray.address to the head's address (`modelserve ray head` prints it)")  # fmt: skip
    return found


def run(found: RayCommand) -> RayRun:
    """Run a `ray start`/`ray stop` command; a failure is an error with Ray's last lines."""
    result = run_streaming(found.argv, timeout=START_DEADLINE, env={**os.environ, **found.env}, keep=60)
    output = "\n".join(line[:300] for line in result.tail)  # Ray quotes whole command lines in some
    if result.timed_out:
        raise DeviceError(f"`{found.text()}` did not finish within {START_DEADLINE:.0f} s:\n{output}",
                          "see Ray's output above")  # fmt: skip
    if result.returncode != 0 and found.role != "stop":  # `ray stop` with nothing running exits 0 anyway
        raise DeviceError(f"`{found.text()}` failed (exit {result.returncode}):\n{output}", "see Ray's output above")
    return RayRun(found, result.returncode or 0, output)


@dataclass(frozen=True)
class ClusterCheck:
    cluster: ray_inventory.RayCluster
    fit: devices.FitVerdict


def check(dep: Deployment, python: str, *, timeout: float = PROBE_DEADLINE) -> ClusterCheck:
    """Read the live cluster through ``python``'s ray and judge the deployment's layout on it."""
    env = {**os.environ, **dep.env}
    found = layout(dep, env)
    cluster = ray_inventory.inspect_cluster(python, found.address, timeout=timeout, env=env)
    fit = ray_inventory.check_cluster_fit(cluster, nodes=found.nodes, gpus_per_node=found.gpus_per_node,
                                          driver_needs_gpu=found.driver_needs_gpu)  # fmt: skip
    return ClusterCheck(cluster, fit)


def preflight(dep: Deployment, python: str, estimate: devices.MemoryEstimate | None, *,
              dry_run: bool) -> devices.FitVerdict:  # fmt: skip
    """`up`'s check of the cluster. A dry run reports a cluster it cannot read instead of failing."""
    try:
        verdict = check(dep, python).fit
    except ModelserveError as exc:
        if not dry_run:
            raise
        return devices.FitVerdict(False, f"Ray cluster not checked: {exc.message}", exc.hint or "")
    if estimate is None or not verdict.fits:
        return verdict
    per_gpu = estimate.per_gpu(layout(dep).gpus) / GIB
    return devices.FitVerdict(True, f"{verdict.message}; the model needs ~{per_gpu:.1f} GiB per GPU "
                                    "(Ray reports no GPU memory: not checked)")  # fmt: skip
