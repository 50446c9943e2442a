"""One deployment as a Kubernetes workload: the engine command `up` would run, planned for a pod.

Why not ``prepare()``: it plans for this machine (its GPUs and their free memory, its interpreter
and installed engines, its state folder), and a pod has none of those. The same backend
``plan()`` runs here with a context that describes the container instead:

- Devices come from the spec alone, never from this machine: ``cuda:0,1`` is 2 GPUs, ``cuda`` is
  ``gpus`` (default 1), ``cpu`` the CPU, and ``auto`` a GPU pod only when ``gpus`` is set. The
  device plugin picks the node's GPUs; inside the container they are 0..N-1, so the rendered
  manifests are the same whatever GPUs the rendering machine has.
- ``backend: auto`` takes the automatic backend with the highest priority for that device kind
  among those rendered here (vLLM on GPUs, the built-in server on the CPU): the image brings the
  engine, so nothing is inspected on this machine.
- The engine as its image has it: ``python3``, and for vLLM what ``inspect`` reports inside
  ``vllm/vllm-openai:vVERSION``, VERSION being the one configs/envs/vllm-cuda.txt pins (its
  ``vllm serve`` console script). The built-in server's default image ``modelserve:VERSION``
  (``-cuda`` for GPUs) is built from this checkout (README: Scaling out). ``--image`` overrides.
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import backends
from backends.base import Backend, PlanContext
from backends.probes import HttpOk, OpenAIModelListed
from launcher import devices
from launcher.core import resources as packaged
from launcher.core.deployment import Deployment
from launcher.core.errors import ConfigError, DeviceError
from launcher.core.launch import ClientEndpoint, LaunchPlan, ProcessSpec
from launcher.core.model_ref import ResolvedModel
from launcher.core.probe import Probe
from launcher.k8s.manifests import GIB, MODEL_MOUNT, SHM_BYTES, Checks, Resources, Workload, service_host
from launcher.store import paths

PYTHON = "python3"  # the interpreter on PATH in both default images
DEFAULT_CPUS = 4  # CPUs requested (and the built-in server's threads) when the spec sets no `threads`
HOST_OVERHEAD = 4 * GIB  # a GPU pod's host memory beyond the weights: the engine processes, pinned buffers
DEFAULT_STORAGE_GIB = 50  # the claim when the model's size is unknown here
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# Not rendered, and why (the fix is in the error's hint).
UNSUPPORTED = {
    "fastchat": "FastChat runs three processes that start one after another, each gated on the one before",
    "ollama": "Ollama pulls its model through its own API after the server starts",
}


@dataclass(frozen=True)
class EngineImage:
    """What a backend's container looks like to the planner."""

    cpu: str | None  # default image on the CPU; None: none is published
    cuda: str | None
    health: str = "/health"  # answers without the API key once the model is loaded
    shm: bool = False  # needs a RAM-backed /dev/shm
    facts: Mapping[str, Any] = field(default_factory=dict)  # what the backend's inspect() says inside it


def vllm_pin() -> str:
    """The vLLM version the managed GPU environment pins (configs/envs/vllm-cuda.txt)."""
    text = packaged.config_path("envs/vllm-cuda.txt").read_text()
    found = re.search(r"^vllm==([\w.]+)", text, re.M)
    if found is None:
        raise ConfigError("configs/envs/vllm-cuda.txt pins no vllm version", "reinstall modelserve")
    return found.group(1)


def engine_images(version: str) -> dict[str, EngineImage]:
    builtin = EngineImage(cpu=f"modelserve:{version}", cuda=f"modelserve:{version}-cuda")
    pin = vllm_pin()
    major_minor = tuple(int(p) for p in pin.split(".")[:2] if p.isdigit())
    facts = {"python": PYTHON, "distribution": "vllm", "version": pin, "console_script": "vllm", "modules": [],
             # vLLM has tool_parsers/tool_strict_level.py since 0.32 (see backends/vllm.py _tools).
             "tool_strict_level": major_minor >= (0, 32)}  # fmt: skip
    # vLLM publishes CUDA images only on Docker Hub: a CPU pod needs --image.
    vllm = EngineImage(cpu=None, cuda=f"vllm/vllm-openai:v{pin}", shm=True, facts=facts)
    return {"flask-transformers": builtin, "flask-modelscope": builtin, "vllm": vllm}


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


def pick_backend(dep: Deployment, kind: str, supported: Sequence[str]) -> Backend:
    if dep.ray is not None:
        raise ConfigError(f"{dep.deployment_name} sets ray: it spans the nodes of a Ray cluster, which "
                          "one Deployment per model cannot express", "render it with `modelserve ray` "
                          "(KubeRay), or remove ray: from the spec")  # fmt: skip
    if dep.backend == "auto":
        auto = [b for b in map(backends.get, supported) if b.auto is not None and kind in b.auto.devices]
        if not auto:
            raise ConfigError(f"no backend is picked automatically for {kind} here", "set backend: in the spec")
        return max(auto, key=lambda b: b.auto.priority if b.auto else 0)
    if dep.backend not in supported:
        why = UNSUPPORTED.get(dep.backend, "it is not one of the backends rendered for Kubernetes")
        raise ConfigError(f"k8s render cannot run backend {dep.backend}: {why}",
                          f"use backend: {' or '.join(supported)}, or run it with `modelserve systemd render`")  # fmt: skip
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


def map_checks(probes: Sequence[Probe], *, api_key: str | None, health: str, budget: float) -> Checks:
    """The plan's readiness probes as kubelet GETs. Listing the model is GET /v1/models; with an
    API key the kubelet cannot authenticate (a header would put the key in the pod spec), so it
    asks the engine's open health path, which both engines serve only once the model is loaded
    (they bind after loading). Probes that generate (a 1-token chat, POST /llm/) are not mapped:
    the kubelet only GETs, and a probe every 10 s must not cost a generation; `modelserve health
    URL` still runs them against the Service."""
    mapped: list[str] = []
    for probe in probes:
        if isinstance(probe, OpenAIModelListed):
            mapped.append(health if api_key else "/v1/models")
        elif isinstance(probe, HttpOk):
            mapped.append(health if api_key else probe.path or "/")
    if not mapped:
        raise ConfigError("none of the backend's readiness probes is a GET the kubelet can make",
                          "use backend: vllm or flask-transformers")  # fmt: skip
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
    table = engine_images(version)
    unknown = sorted(set(images) - {"*", *table})
    if unknown:
        raise ConfigError(f"--image {unknown[0]}=...: {unknown[0]} is not a backend rendered for Kubernetes",
                          f"name one of {', '.join(table)}, or give a bare IMAGE for every backend")  # fmt: skip
    dplan = cluster_devices(dep)
    backend = pick_backend(dep, dplan.kind, list(table))
    engine = table[backend.name]
    image = images.get(backend.name) or images.get("*") or (engine.cuda if dplan.kind == "cuda" else engine.cpu)
    if image is None:
        raise ConfigError(f"{backend.name} has no published image for the CPU", f"pass --image {backend.name}=IMAGE "
                          "with a CPU build of the engine, or set device: cuda")  # fmt: skip
    dep = dep.model_copy(update={"host": "0.0.0.0", "backend": backend.name})
    model = backend.resolve_model(dep, prepare=False, progress=lambda _: None)
    inside = container_model(model)
    estimate, problem = _estimate(dep, dplan, model)
    if problem:
        raise DeviceError(problem, "pick a gpus count that divides the head counts")
    cpus = dep.threads or DEFAULT_CPUS
    memory = None if estimate is None else _memory(dplan, estimate) + (SHM_BYTES if engine.shm else 0)
    ctx = PlanContext(python=PYTHON, log_dir=Path(MODEL_MOUNT) / ".modelserve" / name / "logs",
                      free_port=_no_free_port, cpu_count=cpus, engine=engine.facts, memory_available=memory or 0,
                      model_bytes=estimate.weights if estimate else 0,
                      checkpoint_dtype=devices.checkpoint_dtype(model.path) if model.path else None)  # fmt: skip
    launch = backend.plan(deployment=dep, model=model, devices=dplan, ctx=ctx)
    if len(launch.processes) != 1:
        raise ConfigError(f"{backend.name} plans {len(launch.processes)} processes; k8s render runs one per pod",
                          "use backend: vllm or flask-transformers")  # fmt: skip
    argv, env, secret = _translate(launch.processes[0], inside, dep.api_key)
    workload = Workload(
        name=name, deployment=dep.deployment_name, image=image, argv=argv, env=env, secret_env=secret,
        api_key=dep.api_key, port=dep.port, resources=Resources(cpus, memory, len(dplan.gpus)),
        checks=map_checks(launch.probes, api_key=dep.api_key, health=engine.health, budget=dep.timeout),
        storage_gib=_storage_gib(model), stop_seconds=int(dep.stop_timeout) + 15, shm=engine.shm,
    )  # fmt: skip
    base = f"http://{service_host(name, namespace)}:{dep.port}"
    clients = tuple(replace(c, url=c.url.replace(dep.base_url, base, 1)) for c in launch.clients)
    endpoints = {k: v.replace(dep.base_url, base, 1) for k, v in launch.endpoints.items()}
    notes = [f"{name}: {inside.note}"] + ([] if estimate else [f"{name}: no memory estimate (no config.json here); set resources "
                                                  "by hand"])  # fmt: skip
    return Planned(workload, launch, clients, endpoints, tuple(notes))


def _no_free_port() -> int:
    raise ConfigError("the backend asked for a second port", "use backend: vllm or flask-transformers")


def _estimate(dep: Deployment, dplan: devices.DevicePlan,
              model: ResolvedModel) -> tuple[devices.MemoryEstimate | None, str | None]:  # fmt: skip
    if model.path is None or not Path(model.path).is_dir():
        return None, None
    dtype = dep.dtype if dep.dtype != "auto" else ("float32" if dplan.kind == "cpu" else "bfloat16")
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
