"""Kubernetes manifests for planned workloads: pure renderers returning File objects.

Per workload: ``NAME-deployment.yaml``, ``NAME-service.yaml``, ``NAME-models-pvc.yaml`` (the
model cache, mounted at /models) and, with an API key, ``NAME-api-key-secret.yaml``. Once per
render: the agent config (a ConfigMap; a Secret when it holds the key) and, when asked, a
Kustomize ``kustomization.yaml`` listing them all. Every object carries the namespace, so
``kubectl apply -f DIR`` and ``kubectl apply -k DIR`` put them in the same place.

Choices, and why:
- ``strategy: Recreate``: the claim is ReadWriteOnce and GPUs are scarce; a rolling update would
  start a second pod that waits for both while the first one holds them.
- ``enableServiceLinks: false``: Kubernetes would otherwise inject ``NAME_PORT=tcp://...`` for
  every Service in the namespace, and a Service called ``vllm`` sets ``VLLM_PORT``, which vLLM
  reads as a setting of its own.
- The API key lives only in the Secret (base64 ``data``); the container reads it through
  ``secretKeyRef`` under the variable the backend's plan names (never in argv or the pod spec).
- Probes are ``httpGet`` on the paths the planner mapped from the backend's readiness probes; the
  startup probe's budget is the deployment's own ``timeout`` (what `up` waits for loading).
- GPUs: ``nvidia.com/gpu`` in requests and limits (an extended resource must be equal in both)
  and a toleration for the usual ``nvidia.com/gpu`` taint on GPU nodes.
- CPU: requested, never limited (a CFS quota throttles decoding and saves nothing). Memory: the
  planner's estimate as the request, the limit 25% above it (an estimate, not a measurement).
- A RAM-backed ``/dev/shm`` for engines that need it (vLLM: its engine's message queue and NCCL
  between tensor-parallel workers; the container runtime's default is 64 MiB). It counts
  against the memory limit, so the planner adds its size to the request.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from launcher.core.rendered_file import File

MODEL_MOUNT = "/models"
SHM_BYTES = 2 * 1024**3
GIB = 1024**3
PERIOD_S = 10  # startup and readiness probes: every 10 s
API_KEY_FIELD = "api-key"
PART_OF = "modelserve"


@dataclass(frozen=True)
class Checks:
    """The kubelet's probes: GET paths on the container's port."""

    startup: str
    ready: str
    live: str
    startup_seconds: int  # how long loading may take before the kubelet restarts the container


@dataclass(frozen=True)
class Resources:
    cpus: int
    memory_bytes: int | None  # None: no estimate (no config.json here); nothing requested
    gpus: int = 0


@dataclass(frozen=True)
class Workload:
    """One deployment as a pod: the engine command for the container and what it needs."""

    name: str  # the Kubernetes name (a DNS-1035 label): Deployment, Service, claim prefix
    deployment: str  # the modelserve deployment (or fleet member) it runs
    image: str
    argv: tuple[str, ...]
    env: Mapping[str, str]  # plain values; the names in secret_env are left out of it
    secret_env: tuple[str, ...]  # variables whose value is the API key (read from the Secret)
    api_key: str | None
    port: int
    checks: Checks
    resources: Resources
    storage_gib: int
    stop_seconds: int
    shm: bool = False


@dataclass(frozen=True)
class AgentConfig:
    """Agent client config files, for agents running in the cluster to mount."""

    name: str
    files: Mapping[str, str]  # file name -> text
    secret: bool  # it holds the API key: a Secret, not a ConfigMap


@dataclass(frozen=True)
class Render:
    namespace: str
    source: str  # the spec file, for the header and the re-render line
    version: str
    kustomize: bool = False


def labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "model-server", "app.kubernetes.io/instance": name,
            "app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/managed-by": "modelserve"}  # fmt: skip


def selector(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "model-server", "app.kubernetes.io/instance": name}


def service_host(name: str, namespace: str) -> str:
    """The Service's DNS name inside the cluster (the default cluster domain)."""
    return f"{name}.{namespace}.svc.cluster.local"


def gib(n_bytes: int) -> str:
    return f"{max(1, math.ceil(n_bytes / GIB))}Gi"


def render(workloads: Sequence[Workload], agent: AgentConfig | None, how: Render) -> list[File]:
    files: list[File] = []
    for w in workloads:
        files += [
            _file(f"{w.name}-deployment.yaml", deployment(w, how.namespace), how),
            _file(f"{w.name}-service.yaml", service(w, how.namespace), how),
            _file(f"{w.name}-models-pvc.yaml", claim(w, how.namespace), how),
        ]
        if w.api_key is not None:
            files.append(_file(f"{w.name}-api-key-secret.yaml", api_key_secret(w, how.namespace), how, mode=0o600))
    if agent is not None:
        files.append(_file(f"{agent.name}.yaml", agent_config(agent, how.namespace), how,
                           mode=0o600 if agent.secret else 0o644))  # fmt: skip
    if how.kustomize:
        files.append(kustomization([f.name for f in files], how))
    return files


def as_stream(files: Sequence[File]) -> str:
    """The manifests as one multi-document YAML stream (for `kubectl apply -f -`)."""
    return "---\n".join(f.content for f in files if f.name != "kustomization.yaml")


def _header(how: Render) -> str:
    return (f"# Generated by modelserve {how.version} from {how.source}. After editing that file:\n"
            f"#   modelserve k8s render -c {how.source} --namespace {how.namespace} -o DIR\n")  # fmt: skip


def _file(name: str, doc: dict[str, Any], how: Render, *, mode: int = 0o644) -> File:
    return File(name, _header(how) + dump(doc), mode)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the agent config in a ConfigMap) as literal blocks, readable as the file."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(doc: dict[str, Any]) -> str:
    # width: long argv items (a JSON flag value) stay on one line instead of being folded.
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=10_000)


def _meta(name: str, namespace: str, owner: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": labels(owner)}


def deployment(w: Workload, namespace: str) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": w.stop_seconds,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container(w)],
        "volumes": _volumes(w),
    }
    if w.resources.gpus:
        pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(w.name, namespace, w.name),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector(w.name)},
            "template": {"metadata": {"labels": labels(w.name)}, "spec": pod},
        },
    }


def container(w: Workload) -> dict[str, Any]:
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in w.env.items()]
    env += [{"name": k, "valueFrom": {"secretKeyRef": {"name": secret_name(w), "key": API_KEY_FIELD}}}
            for k in w.secret_env]  # fmt: skip
    mounts = [{"name": "models", "mountPath": MODEL_MOUNT}]
    if w.shm:
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    return {
        "name": "server",
        "image": w.image,
        "command": list(w.argv),
        "ports": [{"name": "http", "containerPort": w.port, "protocol": "TCP"}],
        "env": env,
        "resources": resources(w.resources),
        "startupProbe": _probe(w.checks.startup, period=PERIOD_S, timeout=5,
                               failures=max(1, math.ceil(w.checks.startup_seconds / PERIOD_S))),  # fmt: skip
        "readinessProbe": _probe(w.checks.ready, period=PERIOD_S, timeout=5, failures=3),
        # Only once the startup probe passed; a server that stops answering /health for 90 s is restarted.
        "livenessProbe": _probe(w.checks.live, period=30, timeout=10, failures=3),
        "volumeMounts": mounts,
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }


def _probe(path: str, *, period: int, timeout: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "timeoutSeconds": timeout,
            "failureThreshold": failures}  # fmt: skip


def resources(r: Resources) -> dict[str, Any]:
    requests: dict[str, Any] = {"cpu": str(r.cpus)}
    limits: dict[str, Any] = {}
    if r.memory_bytes is not None:
        requests["memory"] = gib(r.memory_bytes)
        limits["memory"] = gib(r.memory_bytes * 5 // 4)
    if r.gpus:
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(r.gpus)
    return {"requests": requests, "limits": limits} if limits else {"requests": requests}


def _volumes(w: Workload) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [{"name": "models", "persistentVolumeClaim": {"claimName": claim_name(w)}}]
    if w.shm:
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": gib(SHM_BYTES)}})
    return volumes


def claim_name(w: Workload) -> str:
    return f"{w.name}-models"


def secret_name(w: Workload) -> str:
    return f"{w.name}-api-key"


def service(w: Workload, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(w.name, namespace, w.name),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(w.name),
            "ports": [{"name": "http", "port": w.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def claim(w: Workload, namespace: str) -> dict[str, Any]:
    # No storageClassName: the cluster's default class. ReadWriteOnce: every class offers it.
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(claim_name(w), namespace, w.name),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": f"{w.storage_gib}Gi"}}},
    }


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def api_key_secret(w: Workload, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(secret_name(w), namespace, w.name),
        "type": "Opaque",
        "data": {API_KEY_FIELD: _b64(w.api_key or "")},
    }


def agent_config(agent: AgentConfig, namespace: str) -> dict[str, Any]:
    meta = {"name": agent.name, "namespace": namespace,
            "labels": {**labels(agent.name), "app.kubernetes.io/name": "agent-config"}}  # fmt: skip
    if agent.secret:
        return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque",
                "data": {k: _b64(v) for k, v in agent.files.items()}}  # fmt: skip
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": dict(agent.files)}


def kustomization(resources: list[str], how: Render) -> File:
    doc = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": resources}
    return File("kustomization.yaml", _header(how) + dump(doc))
