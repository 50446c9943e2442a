"""`modelserve k8s render`: a deployment or a fleet as Kubernetes manifests, plus the record
`modelserve config NAME` reads to hand agents the Service URLs. The spec comes loaded (with
every backend's section: ``lifecycle.specs.k8s_render`` loads the file); nothing is written.

A fleet has no gateway in Kubernetes: each member becomes a Deployment and a Service of its own
(``FLEET-MEMBER``), always running, and clients address the member's Service directly. The
gateway's work is the cluster's there (Services route, the scheduler places pods), and what it
decides locally (lazy starts, ``max_loaded``, ``idle_ttl``, ``preload``) has no counterpart: a
note says so. ``gateway.api_key`` becomes the key of every member that has none of its own, so
clients keep using the one key they had. Members serve their model under the id clients send
(their ``served_model_name``, else their name), as under the gateway.

The agent config (AgentScope 0.x ``model_config.json``, the entries `up` writes) points at the
Services' DNS names; it is a ConfigMap, or a Secret when it holds an API key.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from launcher.agents.agentscope import agentscope_entries
from launcher.core.deployment import AgentScopeSettings, Deployment
from launcher.core.errors import ConfigError
from launcher.core.fleet_spec import Fleet
from launcher.core.launch import ClientEndpoint
from launcher.core.rendered_file import File
from launcher.k8s import manifests
from launcher.k8s.kuberay import KINDS, kuberay_manifests
from launcher.k8s.workload import Planned, k8s_name, plan_workload
from launcher.store import k8s_records
from launcher.store.records import ClientRecord, DeploymentRecord

NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
AGENT_FILE = "model_config.json"


@dataclass
class K8sRender:
    files: list[File]
    record: DeploymentRecord  # for `modelserve config NAME`
    notes: list[str] = field(default_factory=list)


def render(spec: Deployment | Fleet, *, source: str, version: str, namespace: str = "default",
           images: Mapping[str, str] | None = None, kustomize: bool = False,
           ray_kind: str = "RayCluster") -> K8sRender:  # fmt: skip
    """Plan and render ``spec`` (a deployment, or a fleet; ``source``: the file it came from).
    ``images``: from --image (backend name, or "*" for every backend, -> image).
    A deployment with ``ray:`` spans nodes: it becomes a KubeRay ``ray_kind`` instead."""
    if not NAMESPACE_RE.match(namespace) or len(namespace) > 63:
        raise ConfigError(f"--namespace {namespace!r} is not a Kubernetes namespace name",
                          "use lower-case letters, digits and '-' (at most 63)")  # fmt: skip
    how = manifests.Render(namespace, source, version, kustomize)
    if isinstance(spec, Fleet):
        return _fleet(spec, how, images or {})
    dep = spec
    if dep.ray is not None:
        return _kuberay(dep, ray_kind, namespace)
    name = k8s_name(dep.deployment_name)
    planned = plan_workload(dep, name=name, namespace=namespace, images=images or {}, version=how.version)
    settings = dep.agentscope
    base = settings.config_name or dep.deployment_name
    agent = _agent_config(f"{name}-agent-config", agentscope_entries(planned.clients, settings, base), planned.clients)
    files = manifests.render([planned.workload], agent, how)
    record = _record(dep.deployment_name, [(dep, planned)], how.namespace, settings)
    # The entry names, so `config NAME` names its entries as the ConfigMap does (agentscope.config_name).
    names = [str(e["config_name"]) for e in json.loads(agent.files[AGENT_FILE])]
    record.clients = [ClientRecord("agentscope", f"k8s:{agent.name}", names)]
    return K8sRender(files, record, list(planned.notes))


def _fleet(fleet: Fleet, how: manifests.Render, images: Mapping[str, str]) -> K8sRender:
    planned: list[tuple[Deployment, Planned]] = []
    entries = []
    settings = fleet.agentscope
    for m in fleet.members:
        dep = m.spec.deployment
        update = {"served_model_name": dep.served_model_name or m.model_id, "name": f"{fleet.name}-{m.name}",
                  "api_key": dep.api_key or fleet.gateway.api_key, "fleet": fleet.name}  # fmt: skip
        dep = dep.model_copy(update=update)
        p = plan_workload(dep, name=k8s_name(f"{fleet.name}-{m.name}"), namespace=how.namespace, images=images,
                          version=how.version)  # fmt: skip
        planned.append((dep, p))
        # Named by model id, as `up` names a fleet's entries (and `config FLEET --member ID`).
        entries += agentscope_entries(p.clients, settings, f"{settings.config_name or fleet.name}-{m.model_id}")
    clients = tuple(c for _, p in planned for c in p.clients)
    agent = _agent_config(f"{k8s_name(fleet.name)}-agent-config", entries, clients)
    files = manifests.render([p.workload for _, p in planned], agent, how)
    notes = [f"fleet {fleet.name}: no gateway in Kubernetes; each member is its own Deployment and Service, always "
             "running (preload, max_loaded and idle_ttl do not apply), and clients reach each member's Service"]  # fmt: skip
    notes += [n for _, p in planned for n in p.notes]
    return K8sRender(files, _record(fleet.name, planned, how.namespace, settings, fleet=True), notes)


def _kuberay(dep: Deployment, kind: str, namespace: str) -> K8sRender:
    """The KubeRay kinds (kuberay.py); agents reach the OpenAI API on the head's service
    (RayCluster: the head runs the server) or on Serve's (RayService, port 8000)."""
    if kind not in KINDS:
        raise ConfigError(f"--ray-kind {kind!r} is not a KubeRay kind", f"use one of: {', '.join(KINDS)}")
    rendered_ray = kuberay_manifests(dep, kind, namespace=namespace)
    name = str(rendered_ray.manifests[0]["metadata"]["name"])
    service, port = (f"{name}-head-svc", dep.port) if kind == "RayCluster" else (f"{name}-serve-svc", 8000)
    host = manifests.service_host(service, namespace)
    served = dep.served_model_name or dep.model
    endpoint = ClientEndpoint("openai_chat", f"http://{host}:{port}/v1", served, dep.api_key)
    record = DeploymentRecord(
        name=dep.deployment_name, backend=rendered_ray.backend, api="openai", model=dep.model, model_path=None,
        served_model_name=served, host=host, port=port, base_url=f"http://{host}:{port}",
        endpoints={"openai": f"http://{host}:{port}/v1"}, marker="", started_at=time.time(), log_dir="",
        api_key=dep.api_key, device=f"ray: {dep.ray.nodes} x {dep.gpus or 1} GPU" if dep.ray else "ray",
        status=k8s_records.RENDERED, engine={"kind": kind, "namespace": namespace},
        client_endpoints=[{"kind": endpoint.kind, "url": endpoint.url, "model_name": served, "api_key": dep.api_key}],
        agentscope=dep.agentscope.model_dump(),
    )  # fmt: skip
    files = [File(f"{name}-{kind.lower()}.yaml", rendered_ray.yaml(), mode=0o600 if dep.api_key else 0o644)]
    return K8sRender(files, record, list(rendered_ray.notes))


def _agent_config(name: str, entries: list[dict[str, object]],
                  clients: tuple[ClientEndpoint, ...]) -> manifests.AgentConfig:  # fmt: skip
    text = json.dumps(entries, indent=2, ensure_ascii=False) + "\n"
    return manifests.AgentConfig(name, {AGENT_FILE: text}, secret=any(c.api_key for c in clients))


def _record(name: str, planned: list[tuple[Deployment, Planned]], namespace: str, settings: AgentScopeSettings,
            *, fleet: bool = False) -> DeploymentRecord:  # fmt: skip
    first_dep, first = planned[0]
    w = first.workload
    base = f"http://{manifests.service_host(w.name, namespace)}:{w.port}"
    clients = [c for _, p in planned for c in p.clients]
    return DeploymentRecord(
        name=name, backend="fleet" if fleet else first.launch.backend, api=first.launch.api,
        model=", ".join(d.model for d, _ in planned), model_path=None,
        served_model_name=", ".join(p.launch.served_model_name for _, p in planned),
        host=manifests.service_host(w.name, namespace), port=w.port, base_url=base,
        endpoints=_member_urls(planned) if fleet else first.endpoints, marker="", started_at=time.time(), log_dir="",
        api_key=first_dep.api_key, device=", ".join(_device(p.workload) for _, p in planned),
        status=k8s_records.RENDERED, engine={"image": w.image, "namespace": namespace},
        client_endpoints=[{"kind": c.kind, "url": c.url, "model_name": c.model_name, "api_key": c.api_key}
                          for c in clients],
        agentscope=settings.model_dump(), tools=first.launch.tools,
        members=[p.workload.name for _, p in planned] if fleet else [],
    )  # fmt: skip


def _member_urls(planned: list[tuple[Deployment, Planned]]) -> dict[str, str]:
    """A fleet's summary endpoints: each member's OpenAI URL, by its Kubernetes name."""
    return {p.workload.name: p.endpoints.get("openai", next(iter(p.endpoints.values()), "")) for _, p in planned}


def _device(w: manifests.Workload) -> str:
    return f"{w.resources.gpus} x nvidia.com/gpu" if w.resources.gpus else "cpu"


def remember(result: K8sRender) -> Path:
    """Record the render for `modelserve config NAME` (the CLI calls this after writing)."""
    return k8s_records.save(result.record)
