"""The backend contract: what a third-party engine implements to be served by modelserve.

A backend is pure: ``plan()`` turns (deployment, resolved model, device plan, context) into a
:class:`~launcher.core.launch.LaunchPlan` (processes with argv, env and readiness probes) and
never starts anything. Everything else a backend owns is declared on its class:

- ``Options``: a pydantic model for its own YAML section (``vllm:``, ``fastchat:``), so the shared
  Deployment carries only what every backend uses;
- ``capabilities``: the APIs it serves and the request features it honours;
- ``install_hint``, ``env_spec`` (a managed environment `modelserve env create` builds),
  ``auto`` (whether and when `-b auto` picks it);
- ``inspect()``: facts about the installed engine, asked once per interpreter per command;
- ``gpu_use()``: which of the planned GPUs it occupies and how much of each it claims;
- ``container()``: how a Kubernetes pod runs the engine (image, health path), or why it cannot;
- ``multi_node``, ``node_layout()``, ``kuberay()``, ``ray_serve_app()``: running one model across
  the nodes of a Ray cluster, on bare nodes and under KubeRay;
- ``keeps_model_name``: the engine serves a model under its own name (a gateway rewrites ``model``);
- ``url_probe()``: which readiness probe speaks the API a URL path names (`modelserve health URL`).

Generic code (lifecycle, k8s, gateway, process, store, core) asks these and never a backend's
name (tests/unit/test_generic_code.py keeps it so).

Built-in backends register through the ``modelserve.backends`` entry-point group exactly the way a
third-party one does (see ``backends/__init__.py``).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from launcher.core.capabilities import Capabilities
from launcher.core.deployment import Deployment
from launcher.core.distributions import Availability, local_distributions, probe_distributions
from launcher.core.errors import ConfigError
from launcher.core.launch import LaunchPlan
from launcher.core.model_ref import ResolvedModel
from launcher.core.probe import Probe
from launcher.devices import DevicePlan
from launcher.models import resolve

__all__ = [
    "RERANK_NOTE", "AutoChoice", "Availability", "Backend", "BackendOptions", "Container", "EngineInfo", "EnvSpec",
    "GpuUse", "KubeRayImage", "NoContainer", "NodeLayout", "PlanContext", "render_args",
]  # fmt: skip

Report = Callable[[str], None]
# The summary's line for every rerank deployment: what its clients do instead of an agent config.
RERANK_NOTE = ("rerank: no agent config format has a reranker slot (none is written); clients POST {model, query, "
               "documents, top_n} to /v1/rerank")
DeviceKind = Literal["cpu", "cuda"]


class BackendOptions(BaseModel):
    """Base of a backend's own settings (its YAML section). Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoOptions(BackendOptions):
    """For a backend without settings of its own."""


@dataclass(frozen=True)
class EngineInfo:
    """What ``inspect()`` found: can the engine run, and the facts ``plan()`` needs."""

    available: Availability
    facts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AutoChoice:
    """`-b auto` tries backends by ``priority`` (highest first) among those that run on the
    planned device kind, and takes the first whose engine is installed."""

    priority: int
    devices: frozenset[DeviceKind]


@dataclass(frozen=True)
class EnvSpec:
    """A managed environment (`modelserve env create NAME`) built from pinned requirements."""

    name: str
    requirements: Mapping[str, str]  # variant (cpu | cuda) -> file under configs/envs/
    # Distributions to remove after the install, per variant, and why.
    remove: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    why_remove: str = ""
    engine: tuple[str, ...] = ()  # distributions whose version identifies the engine


@dataclass(frozen=True)
class GpuUse:
    """The GPUs a backend occupies out of a device plan, and the share of each one's total
    memory it claims at start (None: it takes what it needs, which must be free)."""


    devices: DevicePlan
    claims: float | None = None
    splits: bool = False  # the model is split across the GPUs (tensor parallel)


@dataclass(frozen=True)
class Container:
    """How `modelserve k8s render` runs the engine in a pod: one process, the plan's argv."""

    images: Mapping[DeviceKind, str]  # the default image per device kind; a kind without one needs --image
    health: str = "/health"  # a GET that answers without the API key, once the model is loaded
    shm: bool = False  # needs a RAM-backed /dev/shm
    facts: Mapping[str, Any] = field(default_factory=dict)  # what inspect() reports inside the image


@dataclass(frozen=True)
class NoContainer:
    """Why `modelserve k8s render` cannot run the engine in a pod (said in its error)."""

    why: str


@dataclass(frozen=True)
class NodeLayout:
    """How a deployment with ``ray:`` spreads over the cluster: one tensor-parallel group of
    ``gpus_per_node`` GPUs per node, ``nodes`` such groups as pipeline stages."""

    address: str  # "auto": the cluster this machine joined
    nodes: int
    gpus_per_node: int
    # The node `up` starts the server on must give the cluster a GPU too (checked before starting).
    driver_needs_gpu: bool = False

    @property
    def tensor_parallel(self) -> int:
        return self.gpus_per_node

    @property
    def pipeline_parallel(self) -> int:
        return self.nodes

    @property
    def gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    def describe(self) -> str:
        return (f"tensor parallel {self.tensor_parallel} within each node x pipeline parallel "
                f"{self.pipeline_parallel} across nodes ({self.gpus} GPUs, placed by Ray)")  # fmt: skip


@dataclass(frozen=True)
class KubeRayImage:
    """The image KubeRay's pods run (Ray and the engine in one), and the engine as it has it."""

    image: str
    ray_version: str  # the RayCluster's rayVersion: the Ray inside ``image``
    facts: Mapping[str, Any] = field(default_factory=dict)  # what inspect() reports inside it


@dataclass(frozen=True)
class PlanContext:
    """Everything impure that a plan needs, decided by the launcher beforehand."""

    python: str
    log_dir: Path
    free_port: Callable[[], int]
    cpu_count: int = 1
    engine: Mapping[str, Any] = field(default_factory=dict)  # EngineInfo.facts
    memory_available: int = 0  # host RAM available now, bytes
    model_bytes: int = 0  # weights at the serving dtype, bytes (0: unknown)
    running: str | None = None  # Backend.find_running(): a server to reuse instead of starting one
    checkpoint_dtype: str | None = None  # what the model folder's weights are stored in


class Backend(ABC):
    name: ClassVar[str]
    summary: ClassVar[str] = ""
    capabilities: ClassVar[Capabilities]
    Options: ClassVar[type[BackendOptions]] = NoOptions
    supports_cpu: ClassVar[bool] = True
    supports_gpu: ClassVar[bool] = True
    # Python distributions the engine needs in the interpreter that runs it.
    requires: ClassVar[tuple[str, ...]] = ()
    install_hint: ClassVar[str] = "install the engine, or pick another backend with -b (see `modelserve backends`)"
    env_spec: ClassVar[EnvSpec | None] = None
    auto: ClassVar[AutoChoice | None] = None
    # Runs one model across the nodes of a Ray cluster (the deployment's `ray:` section).
    multi_node: ClassVar[bool] = False
    # The engine serves a model under the name it knows it by: a served_model_name would cost a
    # copy (Ollama: a new tag), so a fleet's gateway rewrites `model` in requests instead.
    keeps_model_name: ClassVar[bool] = False

    def options(self, deployment: Deployment) -> BackendOptions:
        """This backend's section of the deployment, validated (defaults when absent)."""
        return self.Options.model_validate(deployment.options.get(self.name, {}))

    def inspect(self, *, python: str, deployment: Deployment | None, local: bool) -> EngineInfo:
        """Is the engine installed in ``python`` (``local``: that is this interpreter), and what
        ``plan()`` needs to know about it. Never imports the engine. The launcher asks once per
        interpreter per command and passes ``facts`` to ``plan()`` as ``ctx.engine``."""
        if local:
            return EngineInfo(local_distributions(self.requires))
        return EngineInfo(probe_distributions(python, self.requires))

    def gpu_use(self, devices: DevicePlan, deployment: Deployment) -> GpuUse:
        """Default: the first planned GPU only, with what it needs free."""
        return GpuUse(replace(devices, gpus=devices.gpus[:1]))

    def resolve_model(self, deployment: Deployment, *, prepare: bool, progress: Report) -> ResolvedModel:
        """What ``-m`` names for this engine (default: folder, HF cache, ModelScope cache, alias)."""
        return resolve(deployment.model, prepare=prepare, progress=progress)

    def find_running(self, deployment: Deployment) -> str | None:
        """A server of this engine that already answers where the deployment would bind (to be
        reused, never stopped), described for the summary; None when there is none."""
        return None

    def after_start(self, *, deployment: Deployment, model: ResolvedModel, launch: LaunchPlan,
                    report: Report, deadline: float) -> None:  # fmt: skip
        """Work once the processes answer and before the final probes (e.g. pull the model).
        ``deadline`` is a time.monotonic() value; raise a ModelserveError to fail `up`."""
        return None

    def container(self, *, version: str) -> Container | NoContainer:
        """How a Kubernetes pod runs this engine (``version``: modelserve's own, for an image
        built from this checkout), or why it cannot. Default: it declares no image."""
        return NoContainer(f"backend {self.name} declares no container image (Backend.container)")

    def node_layout(self, deployment: Deployment, *, env: Mapping[str, str] | None = None) -> NodeLayout:
        """The layout of ``deployment`` (with ``ray:``; ``gpus`` is per node there) on a Ray
        cluster. ``env``: what the engine will start with (the launcher's, then ``env:``)."""
        if not self.multi_node or deployment.ray is None:
            raise ConfigError(f"backend {self.name} does not run across the nodes of a Ray cluster here",
                              "remove the ray: section, or pick a backend that does (`modelserve backends`)")  # fmt: skip
        return NodeLayout(deployment.ray.address or "auto", deployment.ray.nodes, deployment.gpus or 1)

    def kuberay(self) -> KubeRayImage | None:
        """The image KubeRay pods run this engine from (None: KubeRay is not rendered for it)."""
        return None

    def ray_serve_app(self, deployment: Deployment) -> dict[str, Any]:
        """A RayService's ``serveConfigV2``: the Ray Serve application serving ``deployment``."""
        raise ConfigError(f"backend {self.name} has no Ray Serve application", "render a RayCluster (--ray-kind)")

    def url_probe(self, base: str, path: str, api_key: str | None) -> Probe | None:
        """A probe for `modelserve health URL` when ``path`` is a route of an API this engine
        speaks and no other does (Ollama's /api); None leaves the URL to the generic probes."""
        return None

    @abstractmethod
    def plan(
        self, *, deployment: Deployment, model: ResolvedModel, devices: DevicePlan, ctx: PlanContext
    ) -> LaunchPlan: ...


def render_args(args: Mapping[str, Any]) -> list[str]:
    """``{"max_model_len": 2048, "enforce_eager": True}`` -> ``--max-model-len 2048 --enforce-eager``.

    Keys may be given as the engine spells them (``--max-model-len``, ``max-model-len``) or with
    underscores; False and None drop the flag; lists repeat it; dicts are passed as JSON.
    """
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
