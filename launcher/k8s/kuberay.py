"""A deployment with ``ray:`` as KubeRay manifests (``ray.io/v1``): pure renderers, nothing written.

The backend is the one that runs the deployment across nodes (``backends.on_ray``, as for `up`);
what KubeRay needs from it is on the contract: its layout (``node_layout``), the image its pods
run (``kuberay``) and, for a RayService, its Ray Serve application (``ray_serve_app``).
Two kinds, one layout: ``gpus`` GPUs per pod (one tensor-parallel group), ``ray.nodes`` pods (the
pipeline stages), the same as `modelserve up` on bare nodes.

- ``RayCluster``: the head pod is GPU node 1 and runs the server with the argv the backend's plan
  gives `up` (for vLLM: ``vllm serve --distributed-executor-backend ray``, TP x PP);
  ``ray.nodes - 1`` worker pods join it, as `modelserve ray head|worker` lay out bare nodes (and
  what an engine that wants a GPU beside its server needs).
  KubeRay would run its own ``ray start --block`` *after* a container's command, so the cluster
  carries ``ray.io/overwrite-container-cmd: "true"`` and each container says its own ``ray start``
  (workers reach the head through ``$FQ_RAY_IP``, which KubeRay sets in every Ray pod).
- ``RayService``: the backend's Ray Serve application (vLLM: Ray Serve LLM's OpenAI app) with
  the same engine settings; the head holds no GPU (Serve's controller and proxy run there)
  and ``ray.nodes`` worker pods give the GPUs, as in KubeRay's own LLM samples. Serve answers on
  port 8000 of the ``<name>-serve-svc`` service KubeRay creates.

Checked here against the CRDs' JSON schema (tests/fixtures/kuberay/); no cluster runs them here.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

import backends
from backends.base import Backend, KubeRayImage, NodeLayout, PlanContext
from launcher.core.deployment import Deployment
from launcher.core.errors import ConfigError
from launcher.core.launch import ProcessSpec
from launcher.core.model_ref import ResolvedModel
from launcher.devices import DevicePlan

Kind = Literal["RayCluster", "RayService"]
KINDS: tuple[Kind, ...] = ("RayCluster", "RayService")
GCS_PORT = 6379
SERVE_PORT = 8000  # Ray Serve's HTTP proxy, behind <name>-serve-svc
MAX_NAME = {"RayCluster": 53, "RayService": 47}  # KubeRay's validation (utils/constant.go)
OVERWRITE = "ray.io/overwrite-container-cmd"
ULIMIT = "ulimit -n ${RAY_START_ULIMIT_OPEN_FILES:-65536}"  # what KubeRay's own command does first


@dataclass(frozen=True)
class KubeRay:
    """What the renderer returns: the manifests (dicts, in apply order) and notes for the user."""

    kind: Kind
    backend: str  # the backend the pods run
    manifests: tuple[dict[str, Any], ...]
    notes: tuple[str, ...] = field(default=())

    def yaml(self) -> str:
        """The manifests as one multi-document YAML file."""
        return "---\n".join(_dump(m) for m in self.manifests)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (serveConfigV2) as literal blocks, so the embedded YAML stays readable."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def _dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=1000)


def kuberay_manifests(dep: Deployment, kind: Kind, *, namespace: str | None = None) -> KubeRay:
    """``dep`` (with ``ray:``) as a KubeRay ``kind``. Raises ConfigError for what the kind cannot
    carry (an API key through Ray Serve) and for a backend KubeRay is not rendered for."""
    if dep.ray is None:
        raise ConfigError("KubeRay manifests need a ray: section", "add `ray: {nodes: 2}` and gpus: N (per node)")
    if kind not in KINDS:
        raise ConfigError(f"unknown KubeRay kind {kind!r}", f"use one of: {', '.join(KINDS)}")
    backend = backends.on_ray(dep.backend)
    pods = backend.kuberay() if backend is not None else None
    if backend is None or pods is None:
        raise ConfigError(f"no KubeRay image is declared for backend {backend.name if backend else dep.backend}",
                          "run it on bare nodes with `modelserve ray head|worker` and `up`")  # fmt: skip
    name = kuberay_name(dep.deployment_name, kind)
    metadata: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {}),
                                "labels": {"app.kubernetes.io/managed-by": "modelserve"}}  # fmt: skip
    notes = [f"model {dep.model!r} is fetched by every pod" if not _is_path(dep.model) else
             f"model {dep.model} must be at that path in every pod (mount it)"]  # fmt: skip
    if kind == "RayCluster":
        spec, more = _ray_cluster_spec(dep, name, backend, pods)
        metadata["annotations"] = {OVERWRITE: "true"}
        notes += more
    else:
        spec = _ray_service_spec(dep, backend, pods)
        notes.append(f"OpenAI API: http://{name}-serve-svc:{SERVE_PORT}/v1 (Ray Serve)")
    return KubeRay(kind, backend.name, ({"apiVersion": "ray.io/v1", "kind": kind, "metadata": metadata, "spec": spec},),
                   tuple(notes))  # fmt: skip


def kuberay_name(name: str, kind: Kind) -> str:
    """The deployment's name as KubeRay accepts it: a DNS-1035 label (lowercase letters, digits,
    '-', starting with a letter) no longer than KubeRay allows for ``kind``."""
    out = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "modelserve"
    out = out if out[0].isalpha() else "m-" + out
    if len(out) > MAX_NAME[kind]:
        raise ConfigError(f"name: {out!r} has {len(out)} characters; KubeRay allows at most {MAX_NAME[kind]} for a "
                          f"{kind}", "set a shorter `name:`")  # fmt: skip
    return out


def _is_path(model: str) -> bool:
    return model.startswith(("/", ".", "~"))


def serve_process(dep: Deployment, backend: Backend, pods: KubeRayImage) -> ProcessSpec:
    """The server process the backend's plan gives `up`, as a pod runs it: from the image,
    bound to every address, joining the cluster KubeRay's RAY_ADDRESS names."""
    pod_ray = dep.ray.model_copy(update={"address": None}) if dep.ray else None
    pod_dep = dep.model_copy(update={"host": "0.0.0.0", "ray": pod_ray, "backend": backend.name})
    served = dep.served_model_name or dep.model
    model = ResolvedModel(dep.model, "remote", None, served, "fetched by the pod")
    ctx = PlanContext(python="python3", log_dir=Path("/tmp/modelserve/logs"), free_port=lambda: 0,
                      engine=pods.facts)  # fmt: skip
    plan = backend.plan(deployment=pod_dep, model=model, devices=DevicePlan("cuda", (), "KubeRay"), ctx=ctx)
    return plan.processes[0]


def _env(proc: ProcessSpec, name: str) -> list[dict[str, Any]]:
    """Container env; secrets (the API key) from the Secret ``<name>-secrets``, never inline."""
    out: list[dict[str, Any]] = []
    for key, value in sorted(proc.env.items()):
        if key in proc.secret_env:
            ref = {"name": f"{name}-secrets", "key": key.lower().replace("_", "-")}
            out.append({"name": key, "valueFrom": {"secretKeyRef": ref}})
        else:
            out.append({"name": key, "value": value})
    return out


def _gpu_resources(gpus: int) -> dict[str, Any]:
    return {"limits": {"nvidia.com/gpu": gpus}, "requests": {"nvidia.com/gpu": gpus}}


def _container(name: str, image: str, args: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": image, "command": ["/bin/bash", "-lc", "--"], "args": [args], **extra}


def _ray_cluster_spec(dep: Deployment, name: str, backend: Backend,
                      pods: KubeRayImage) -> tuple[dict[str, Any], list[str]]:  # fmt: skip
    layout = backend.node_layout(dep)
    image = (dep.ray.image if dep.ray else None) or pods.image
    proc = serve_process(dep, backend, pods)
    gpus = layout.gpus_per_node
    head_start = shlex.join(["ray", "start", "--head", f"--port={GCS_PORT}", f"--num-gpus={gpus}",
                             "--dashboard-host=0.0.0.0", "--disable-usage-stats"])  # fmt: skip
    ports = [{"containerPort": GCS_PORT, "name": "gcs"}, {"containerPort": 8265, "name": "dashboard"},
             {"containerPort": 10001, "name": "client"}, {"containerPort": dep.port, "name": "openai"}]  # fmt: skip
    head = _container("ray-head", image, f"{ULIMIT}; {head_start} && exec {proc.command_line()}",
                      env=_env(proc, name), ports=ports, resources=_gpu_resources(gpus))  # fmt: skip
    spec: dict[str, Any] = {
        "rayVersion": pods.ray_version,
        "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [head]}}},
    }
    if layout.nodes > 1:
        join = shlex.join(["ray", "start", f"--num-gpus={gpus}", "--block", "--disable-usage-stats"])
        worker = _container("ray-worker", image, f"{ULIMIT}; {join} --address=$FQ_RAY_IP:{GCS_PORT}",
                            env=[{"name": k, "value": v} for k, v in sorted(dep.env.items())],
                            resources=_gpu_resources(gpus))  # fmt: skip
        spec["workerGroupSpecs"] = [{
            "groupName": "gpu", "replicas": layout.nodes - 1, "minReplicas": layout.nodes - 1,
            "maxReplicas": layout.nodes - 1, "rayStartParams": {}, "template": {"spec": {"containers": [worker]}},
        }]  # fmt: skip
    notes = [f"OpenAI API: http://{name}-head-svc:{dep.port}/v1 ({backend.name} on the head pod)"]
    if proc.secret_env:
        keys = ", ".join(f"--from-literal={k.lower().replace('_', '-')}=..." for k in sorted(proc.secret_env))
        notes.append(f"create the Secret first: kubectl create secret generic {name}-secrets {keys}")
    return spec, notes


def _ray_service_spec(dep: Deployment, backend: Backend, pods: KubeRayImage) -> dict[str, Any]:
    config = _dump(backend.ray_serve_app(dep))
    layout: NodeLayout = backend.node_layout(dep)
    image = (dep.ray.image if dep.ray else None) or pods.image
    ports = [{"containerPort": GCS_PORT, "name": "gcs"}, {"containerPort": 8265, "name": "dashboard"},
             {"containerPort": 10001, "name": "client"}, {"containerPort": SERVE_PORT, "name": "serve"}]  # fmt: skip
    head = {"name": "ray-head", "image": image, "ports": ports}
    worker = {"name": "ray-worker", "image": image, "resources": _gpu_resources(layout.gpus_per_node)}
    cluster = {
        "rayVersion": pods.ray_version,
        "headGroupSpec": {"rayStartParams": {"num-gpus": "0", "dashboard-host": "0.0.0.0"},
                          "template": {"spec": {"containers": [head]}}},
        "workerGroupSpecs": [{
            "groupName": "gpu", "replicas": layout.nodes, "minReplicas": layout.nodes, "maxReplicas": layout.nodes,
            "rayStartParams": {"num-gpus": str(layout.gpus_per_node)}, "template": {"spec": {"containers": [worker]}},
        }],
    }  # fmt: skip
    return {"serveConfigV2": config, "rayClusterConfig": cluster}
