"""One deployment as a Kubernetes workload: the engine command `up` would run, planned for a pod.

Why not ``prepare()``: it plans for this machine (its GPUs and their free memory, its interpreter
and installed engines, its state folder), and a pod has none of those. The same backend
``plan()`` runs here with a context that describes the container instead:

- Devices come from the spec alone, never from this machine: ``cuda:0,1`` is 2 GPUs, ``cuda`` is
  ``gpus`` (default 1), ``cpu`` the CPU, and ``auto`` a GPU pod only when ``gpus`` is set. The
  device plugin picks the node's GPUs; inside the container they are 0..N-1, so the rendered
  manifests are the same whatever GPUs the rendering machine has.
- Which backends a pod can run, and how, is each backend's ``container()`` (its default image
  per device kind, its open health path, whether it needs /dev/shm, and what ``inspect`` reports
  inside the image); one that cannot says why, and the error names those that can. ``--image``
  overrides the image.
- ``backend: auto`` takes the automatic backend with the highest priority for that device kind
  (``backends.automatic``, as `up` does) among those a pod can run: the image brings the engine,
  so nothing is inspected on this machine.
- The model lives on a claim mounted at /models. A local folder (or the converted demo alias)
  becomes /models/FOLDER: copy it there once. A hub ID is handed to the engine as is and
  downloaded into the claim on first start (HF_HOME=/models/huggingface), so the offline flags
  the plan sets for a locally cached ID are dropped. The plan still reads the chat template,
  checkpoint dtype and head counts from the local folder when there is one, as `up` would.
- The server binds 0.0.0.0 (the Service reaches it through the pod's address).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import backends
from backends.base import Backend, Container, NoContainer, PlanContext
from backends.probes import HttpOk, OpenAIModelListed
from launcher import devices
from launcher.core.deployment import Deployment
from launcher.core.errors import ConfigError, DeviceError
from launcher.core.launch import ClientEndpoint, LaunchPlan, ProcessSpec
from launcher.core.model_ref import ResolvedModel
from launcher.core.probe import Probe
from launcher.k8s.manifests import GIB, MODEL_MOUNT, SHM_BYTES, Checks, Resources, Workload, service_host
from launcher.models.task import declared_task
from launcher.store import paths

PYTHON = "python3"  # the interpreter on PATH in both default images
DEFAULT_CPUS = 4  # CPUs requested (and the built-in server's threads) when the spec sets no `threads`
HOST_OVERHEAD = 4 * GIB  # a GPU pod's host memory beyond the weights: the engine processes, pinned buffers
DEFAULT_STORAGE_GIB = 50  # the claim when the model's size is unknown here
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class Containers:
    """What every registered backend says about running in a pod."""

    able: dict[str, Container]  # by backend name, in registry order
    refused: dict[str, str]  # backend name -> why not

    @classmethod
    def declared(cls, version: str) -> Containers:
        able: dict[str, Container] = {}
        refused: dict[str, str] = {}
        for backend in backends.loaded():
            found = backend.container(version=version)
            if isinstance(found, NoContainer):
                refused[backend.name] = found.why
            else:
                able[backend.name] = found
        return cls(able, refused)

    def fix(self) -> str:
        """The hint of a refusal: the backends a pod can run."""
        return f"use backend: {' or '.join(self.able) or '(none registered)'}"


def k8s_name(text: str) -> str:
    """A DNS-1035 label from a deployment name: lower case, '-' for anything else."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    if name and not name[0].isalpha():
        name = f"m-{name}"
    # The longest derived name is NAME-agent-config (and -models, -api-key): 63 at most.
    if not DNS_LABEL.match(name) or len(name) > 50:
        raise ConfigError(f"{text!r} makes no Kubernetes name (a DNS label of at most 50 characters here)",
                          "set a shorter `name:` in the spec (letters, digits and '-')")  # fmt: skip
    return name


def cluster_devices(dep: Deployment) -> devices.DevicePlan:
    if dep.device == "cpu" or (dep.device == "auto" and dep.gpus is None):
        return devices.DevicePlan("cpu", (), f"device {dep.device}")
    count = len(dep.device.split(":", 1)[1].split(",")) if dep.device.startswith("cuda:") else dep.gpus or 1
    gpus = tuple(devices.Gpu(index=i, uuid="", name="nvidia.com/gpu", memory_total_mib=0, memory_used_mib=0,
                             memory_free_mib=0) for i in range(count))  # fmt: skip
    return devices.DevicePlan("cuda", gpus, f"{count} x nvidia.com/gpu")


def pick_backend(dep: Deployment, kind: str, table: Containers) -> Backend:
    if dep.ray is not None:
        raise ConfigError(f"{dep.deployment_name} sets ray: it spans the nodes of a Ray cluster, which "
                          "one Deployment per model cannot express", "render it with `modelserve ray` "
                          "(KubeRay), or remove ray: from the spec")  # fmt: skip
    if dep.backend == "auto":
        auto = [b for b in backends.automatic(kind) if b.name in table.able]
        if not auto:
            raise ConfigError(f"no backend is picked automatically for {kind} here", "set backend: in the spec")
        return auto[0]
    if dep.backend not in table.able:
        why = table.refused.get(dep.backend, "it is not a registered backend")
        raise ConfigError(f"k8s render cannot run backend {dep.backend}: {why}",
                          f"{table.fix()}, or run it with `modelserve systemd render`")  # fmt: skip
    return backends.get(dep.backend)


@dataclass(frozen=True)
class ContainerModel:
    local: ResolvedModel  # what the plan reads metadata from (as `up` would)
    ref: str  # what the engine gets inside the container
    drop_env: tuple[str, ...]
    note: str


def container_model(model: ResolvedModel) -> ContainerModel:
    if model.path is None or model.kind in ("hf-cache", "modelscope-cache"):
        # The pod downloads the ID into the claim: HF_HUB_OFFLINE would make that fail.
        return ContainerModel(model, model.reference, ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"),
                              f"{model.reference} is downloaded into the claim on the first start (HF_HOME="
                              f"{MODEL_MOUNT}/huggingface); the cluster needs to reach the hub")  # fmt: skip
    inside = str(PurePosixPath(MODEL_MOUNT) / Path(model.path).name)
    return ContainerModel(model, inside, (), f"copy {model.path} into its claim as {inside} before the first "
                                             "start (e.g. kubectl cp into a pod that mounts it)")  # fmt: skip


def map_checks(probes: Sequence[Probe], *, api_key: str | None, health: str, budget: float,
               fix: str = "use a backend whose readiness probes include a GET") -> Checks:  # fmt: skip
    """The plan's readiness probes as kubelet GETs. Listing the model is GET /v1/models; with an
    API key the kubelet cannot authenticate (a header would put the key in the pod spec), so it
    asks the engine's open health path (``Container.health``), which answers only once the model
    is loaded. Probes that generate (a 1-token chat, POST /llm/) are not mapped:
    the kubelet only GETs, and a probe every 10 s must not cost a generation; `modelserve health
    URL` still runs them against the Service."""
    mapped: list[str] = []
    for probe in probes:
        if isinstance(probe, OpenAIModelListed):
            mapped.append(health if api_key else "/v1/models")
        elif isinstance(probe, HttpOk):
            mapped.append(health if api_key else probe.path or "/")
    if not mapped:
        raise ConfigError("none of the backend's readiness probes is a GET the kubelet can make", fix)
    return Checks(mapped[0], mapped[0], health, math.ceil(budget))


@dataclass(frozen=True)
class Planned:
    workload: Workload
    launch: LaunchPlan
    clients: tuple[ClientEndpoint, ...]  # at the Service's DNS name
    endpoints: dict[str, str]  # the summary's endpoints, at the Service's DNS name
    notes: tuple[str, ...]


def plan_workload(dep: Deployment, *, name: str, namespace: str, images: Mapping[str, str],
                  version: str) -> Planned:  # fmt: skip
    """``images``: backend name (or "*": every backend) -> image, from --image."""
    table = Containers.declared(version)
    unknown = sorted(set(images) - {"*", *table.able})
    if unknown:
        raise ConfigError(f"--image {unknown[0]}=...: {unknown[0]} is not a backend rendered for Kubernetes",
                          f"name one of {', '.join(table.able)}, or give a bare IMAGE for every backend")  # fmt: skip
    dplan = cluster_devices(dep)
    backend = pick_backend(dep, dplan.kind, table)
    engine = table.able[backend.name]
    image = images.get(backend.name) or images.get("*") or engine.images.get(dplan.kind)
    if image is None:
        other = "device: cuda" if dplan.kind == "cpu" else "device: cpu"
        raise ConfigError(f"{backend.name} has no published image for the {_kind_name(dplan.kind)}",
                          f"pass --image {backend.name}=IMAGE with a {_kind_name(dplan.kind)} build of the engine, "
                          f"or set {other}")  # fmt: skip
    dep = dep.model_copy(update={"host": "0.0.0.0", "backend": backend.name})
    model = backend.resolve_model(dep, prepare=False, progress=lambda _: None)
    if dep.task is None:  # as `up` decides it: what the model (an alias, or its folder) declares
        found = declared_task(dep.model, model.path)
        dep = dep.model_copy(update={"task": found.task if found else "generate"})
    inside = container_model(model)
    estimate, problem = _estimate(dep, dplan, model)
    if problem:
        raise DeviceError(problem, "pick a gpus count that divides the head counts")
    cpus = dep.threads or DEFAULT_CPUS
    memory = None if estimate is None else _memory(dplan, estimate) + (SHM_BYTES if engine.shm else 0)
    ctx = PlanContext(python=PYTHON, log_dir=Path(MODEL_MOUNT) / ".modelserve" / name / "logs",
                      free_port=_no_second_port(table.fix()), cpu_count=cpus, engine=engine.facts, memory_available=memory or 0,
                      model_bytes=estimate.weights if estimate else 0,
                      checkpoint_dtype=devices.checkpoint_dtype(model.path) if model.path else None)  # fmt: skip
    launch = backend.plan(deployment=dep, model=model, devices=dplan, ctx=ctx)
    if len(launch.processes) != 1:
        raise ConfigError(f"{backend.name} plans {len(launch.processes)} processes; k8s render runs one per pod",
                          table.fix())
    argv, env, secret = _translate(launch.processes[0], inside, dep.api_key)
    workload = Workload(
        name=name, deployment=dep.deployment_name, image=image, argv=argv, env=env, secret_env=secret,
        api_key=dep.api_key, port=dep.port, resources=Resources(cpus, memory, len(dplan.gpus)),
        checks=map_checks(launch.probes, api_key=dep.api_key, health=engine.health, budget=dep.timeout,
                          fix=table.fix()),
        storage_gib=_storage_gib(model), stop_seconds=int(dep.stop_timeout) + 15, shm=engine.shm,
    )  # fmt: skip
    base = f"http://{service_host(name, namespace)}:{dep.port}"
    clients = tuple(replace(c, url=c.url.replace(dep.base_url, base, 1)) for c in launch.clients)
    endpoints = {k: v.replace(dep.base_url, base, 1) for k, v in launch.endpoints.items()}
    notes = [f"{name}: {inside.note}"] + ([] if estimate else [f"{name}: no memory estimate (no config.json here); set resources "
                                                  "by hand"])  # fmt: skip
    return Planned(workload, launch, clients, endpoints, tuple(notes))


def _no_second_port(fix: str) -> Callable[[], int]:
    def refuse() -> int:
        raise ConfigError("the backend asked for a second port", fix)

    return refuse


def _kind_name(kind: str) -> str:
    return "CPU" if kind == "cpu" else "GPU"


def _estimate(dep: Deployment, dplan: devices.DevicePlan,
              model: ResolvedModel) -> tuple[devices.MemoryEstimate | None, str | None]:  # fmt: skip
    if model.path is None or not Path(model.path).is_dir():
        return None, None
    dtype = devices.serving_dtype(dep.dtype, dplan.kind)
    estimate = devices.estimate_memory(model.path, dtype=dtype, max_model_len=dep.max_model_len)
    return estimate, devices.tensor_parallel_problem(model.path, dplan.tensor_parallel)


def _memory(dplan: devices.DevicePlan, estimate: devices.MemoryEstimate) -> int:
    """Host memory the pod requests: on the CPU the weights, KV cache and overhead live there; on
    GPUs loading still goes through host memory (page cache, pinned buffers) once."""
    return estimate.total if dplan.kind == "cpu" else estimate.weights + HOST_OVERHEAD


def _storage_gib(model: ResolvedModel) -> int:
    """The claim: the checkpoint at its own dtype plus a quarter, plus 5 GiB of engine caches."""
    if model.path is None or not Path(model.path).is_dir():
        return DEFAULT_STORAGE_GIB
    stored = devices.estimate_memory(model.path, dtype=devices.checkpoint_dtype(model.path) or "as stored")
    if stored is None:
        return DEFAULT_STORAGE_GIB
    return max(10, math.ceil(stored.weights * 5 / 4 / GIB) + 5)


def _translate(spec: ProcessSpec, inside: ContainerModel,
               api_key: str | None) -> tuple[tuple[str, ...], dict[str, str], tuple[str, ...]]:  # fmt: skip
    """argv, plain env and the secret env names, with this machine's model path made the
    container's. Anything that still names this machine is an error, not a broken pod."""
    local = inside.local.path
    argv = tuple(inside.ref if local and arg == local else arg for arg in spec.argv)
    env = {"HF_HOME": f"{MODEL_MOUNT}/huggingface"}
    env.update({k: (inside.ref if local and v == local else v) for k, v in spec.env.items()
                if k not in inside.drop_env and k not in spec.secret_env})  # fmt: skip
    for key in spec.secret_env:
        if spec.env.get(key) != api_key:  # only the API key has a Secret to come from
            raise ConfigError(f"the plan passes a secret in {key} that is not the API key", "remove it from env:")
    here = [str(p) for p in (paths.home(), paths.cache(), local) if p]
    left = [v for v in (*argv, *env.values()) if any(h in v for h in here)]
    if left:
        raise ConfigError(f"the engine command still names a path on this machine: {left[0]}",
                          "use paths under /models in env: and backend_args:")  # fmt: skip
    return argv, env, tuple(sorted(spec.secret_env))
