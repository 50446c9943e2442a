"""A deployment with ``ray:`` as KubeRay manifests (``ray.io/v1``): pure renderers, nothing written.

Two kinds, one layout: ``gpus`` GPUs per pod (one tensor-parallel group), ``ray.nodes`` pods (the
pipeline stages), the same as `modelserve up` on bare nodes.

- ``RayCluster``: the head pod is GPU node 1 and runs ``vllm serve`` with the argv the vLLM plan
  gives `up` (``--distributed-executor-backend ray``, TP x PP); ``ray.nodes - 1`` worker pods
  join it, as `modelserve ray head|worker` lay out bare nodes (and what vLLM's legacy Ray
  executor needs: a GPU beside the server).
  KubeRay would run its own ``ray start --block`` *after* a container's command, so the cluster
  carries ``ray.io/overwrite-container-cmd: "true"`` and each container says its own ``ray start``
  (workers reach the head through ``$FQ_RAY_IP``, which KubeRay sets in every Ray pod).
- ``RayService``: Ray Serve LLM's OpenAI app (``ray.serve.llm:build_openai_app``, vLLM inside)
  with the same engine settings; the head holds no GPU (Serve's controller and proxy run there)
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

from backends.base import PlanContext
from backends.vllm import VLLMBackend, parallel_layout
from launcher.core.deployment import Deployment
from launcher.core.errors import ConfigError
from launcher.core.launch import ProcessSpec
from launcher.core.model_ref import ResolvedModel
from launcher.devices import DevicePlan

Kind = Literal["RayCluster", "RayService"]
KINDS: tuple[Kind, ...] = ("RayCluster", "RayService")
RAY_VERSION = "2.60.0"  # configs/envs/vllm-cuda.txt pins the same ray
# The tag pattern of KubeRay v1.7.0's LLM samples (rayproject/ray-llm:2.56.0-py312-cu130); not
# checked against the registry from here: set ray.image to the image you run.
DEFAULT_IMAGE = f"rayproject/ray-llm:{RAY_VERSION}-py312-cu130"
GCS_PORT = 6379
SERVE_PORT = 8000  # Ray Serve's HTTP proxy, behind <name>-serve-svc
MAX_NAME = {"RayCluster": 53, "RayService": 47}  # KubeRay's validation (utils/constant.go)
OVERWRITE = "ray.io/overwrite-container-cmd"
ULIMIT = "ulimit -n ${RAY_START_ULIMIT_OPEN_FILES:-65536}"  # what KubeRay's own command does first


@dataclass(frozen=True)
class KubeRay:
    """What the renderer returns: the manifests (dicts, in apply order) and notes for the user."""

    kind: Kind
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
    carry (an API key through Ray Serve)."""
    if dep.ray is None:
        raise ConfigError("KubeRay manifests need a ray: section", "add `ray: {nodes: 2}` and gpus: N (per node)")
    if kind not in KINDS:
        raise ConfigError(f"unknown KubeRay kind {kind!r}", f"use one of: {', '.join(KINDS)}")
    name = k8s_name(dep.deployment_name, kind)
    metadata: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {}),
                                "labels": {"app.kubernetes.io/managed-by": "modelserve"}}  # fmt: skip
    notes = [f"model {dep.model!r} is fetched by every pod" if not _is_path(dep.model) else
             f"model {dep.model} must be at that path in every pod (mount it)"]  # fmt: skip
    if kind == "RayCluster":
        spec, more = _ray_cluster_spec(dep, name)
        metadata["annotations"] = {OVERWRITE: "true"}
        notes += more
    else:
        spec = _ray_service_spec(dep)
        notes.append(f"OpenAI API: http://{name}-serve-svc:{SERVE_PORT}/v1 (Ray Serve LLM)")
    return KubeRay(kind, ({"apiVersion": "ray.io/v1", "kind": kind, "metadata": metadata, "spec": spec},),
                   tuple(notes))  # fmt: skip


def k8s_name(name: str, kind: Kind) -> str:
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


def serve_process(dep: Deployment) -> ProcessSpec:
    """The vLLM server process the vLLM plan gives `up`, as a pod runs it: ``vllm serve`` from
    the image, bound to every address, joining the cluster KubeRay's RAY_ADDRESS names."""
    pod_ray = dep.ray.model_copy(update={"address": None}) if dep.ray else None
    pod_dep = dep.model_copy(update={"host": "0.0.0.0", "ray": pod_ray})
    served = dep.served_model_name or dep.model
    model = ResolvedModel(dep.model, "remote", None, served, "fetched by the pod")
    ctx = PlanContext(python="python3", log_dir=Path("/tmp/modelserve/logs"), free_port=lambda: 0,
                      engine={"distribution": "vllm", "console_script": "vllm"})  # fmt: skip
    plan = VLLMBackend().plan(deployment=pod_dep, model=model, devices=DevicePlan("cuda", (), "KubeRay"), ctx=ctx)
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


def _ray_cluster_spec(dep: Deployment, name: str) -> tuple[dict[str, Any], list[str]]:
    layout = parallel_layout(dep)
    image = (dep.ray.image if dep.ray else None) or DEFAULT_IMAGE
    proc = serve_process(dep)
    gpus = layout.gpus_per_node
    head_start = shlex.join(["ray", "start", "--head", f"--port={GCS_PORT}", f"--num-gpus={gpus}",
                             "--dashboard-host=0.0.0.0", "--disable-usage-stats"])  # fmt: skip
    ports = [{"containerPort": GCS_PORT, "name": "gcs"}, {"containerPort": 8265, "name": "dashboard"},
             {"containerPort": 10001, "name": "client"}, {"containerPort": dep.port, "name": "openai"}]  # fmt: skip
    head = _container("ray-head", image, f"{ULIMIT}; {head_start} && exec {proc.command_line()}",
                      env=_env(proc, name), ports=ports, resources=_gpu_resources(gpus))  # fmt: skip
    spec: dict[str, Any] = {
        "rayVersion": RAY_VERSION,
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
    notes = [f"OpenAI API: http://{name}-head-svc:{dep.port}/v1 (vllm serve on the head pod)"]
    if proc.secret_env:
        keys = ", ".join(f"--from-literal={k.lower().replace('_', '-')}=..." for k in sorted(proc.secret_env))
        notes.append(f"create the Secret first: kubectl create secret generic {name}-secrets {keys}")
    return spec, notes


def serve_llm_config(dep: Deployment) -> dict[str, Any]:
    """Ray Serve LLM's application config (``serveConfigV2``) for the same engine settings."""
    if dep.api_key:
        raise ConfigError("api_key: Ray Serve LLM's OpenAI app checks no API key",
                          "render a RayCluster (vLLM checks VLLM_API_KEY there), or put a gateway that checks "
                          "keys in front of the RayService")  # fmt: skip
    layout = parallel_layout(dep)
    engine: dict[str, Any] = {"tensor_parallel_size": layout.tensor_parallel,
                              "pipeline_parallel_size": layout.pipeline_parallel}  # fmt: skip
    opts = VLLMBackend().options(dep)
    engine["gpu_memory_utilization"] = opts.gpu_memory_utilization or 0.9
    if dep.max_model_len:
        engine["max_model_len"] = dep.max_model_len
    if dep.dtype != "auto":
        engine["dtype"] = dep.dtype
    engine.update({k.lstrip("-").replace("-", "_"): v for k, v in dep.backend_args.items()})
    llm = {
        "model_loading_config": {"model_id": dep.served_model_name or dep.model, "model_source": dep.model},
        "engine_kwargs": engine,
        "deployment_config": {"autoscaling_config": {"min_replicas": 1, "max_replicas": 1}},
    }
    if dep.env:
        llm["runtime_env"] = {"env_vars": dict(sorted(dep.env.items()))}
    app = {"name": "llms", "import_path": "ray.serve.llm:build_openai_app", "route_prefix": "/",
           "args": {"llm_configs": [llm]}}  # fmt: skip
    return {"applications": [app]}


def _ray_service_spec(dep: Deployment) -> dict[str, Any]:
    layout = parallel_layout(dep)
    image = (dep.ray.image if dep.ray else None) or DEFAULT_IMAGE
    ports = [{"containerPort": GCS_PORT, "name": "gcs"}, {"containerPort": 8265, "name": "dashboard"},
             {"containerPort": 10001, "name": "client"}, {"containerPort": SERVE_PORT, "name": "serve"}]  # fmt: skip
    head = {"name": "ray-head", "image": image, "ports": ports}
    worker = {"name": "ray-worker", "image": image, "resources": _gpu_resources(layout.gpus_per_node)}
    cluster = {
        "rayVersion": RAY_VERSION,
        "headGroupSpec": {"rayStartParams": {"num-gpus": "0", "dashboard-host": "0.0.0.0"},
                          "template": {"spec": {"containers": [head]}}},
        "workerGroupSpecs": [{
            "groupName": "gpu", "replicas": layout.nodes, "minReplicas": layout.nodes, "maxReplicas": layout.nodes,
            "rayStartParams": {"num-gpus": str(layout.gpus_per_node)}, "template": {"spec": {"containers": [worker]}},
        }],
    }  # fmt: skip
    config = _dump(serve_llm_config(dep))
    return {"serveConfigV2": config, "rayClusterConfig": cluster}
