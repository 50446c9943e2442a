"""What generic code asks the backend contract instead of a backend's name: the probe for a URL
(`modelserve health URL`), whether a fleet member serves under the id clients use, the multi-node
layout, and what a pod can run. Built-ins answer like any plugin (tests/plugin answers too:
tests/integration/test_plugin_backend.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import backends
from backends.base import Container, NoContainer
from backends.ollama.probes import OllamaVersion
from backends.probes import HttpOk, PostLlmAnswers
from launcher.core.deployment import Deployment, RaySettings
from launcher.core.errors import ConfigError
from launcher.lifecycle import fleet as fleets
from launcher.lifecycle.status import _url_probes


@pytest.mark.parametrize(("url", "expected"), [
    ("http://h:1/api/tags", OllamaVersion("http://h:1")),  # claimed by the Ollama backend's url_probe
    ("http://h:1/llm/", PostLlmAnswers("http://h:1")),
    ("http://h:1/v1", HttpOk("http://h:1", path="/v1/models")),
    ("http://h:1", HttpOk("http://h:1", path="/health")),
    ("http://h:1/metrics", HttpOk("http://h:1", path="/metrics")),  # no backend claims it: a plain GET
])  # fmt: skip
def test_health_of_a_url_asks_the_probe_of_its_api(url: str, expected: object,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.delenv("MODELSERVE_API_KEY", raising=False)
    assert _url_probes(url) == [expected]


def test_a_fleet_member_serves_under_its_id_unless_its_engine_keeps_its_own_names(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text("name: lab\ndeployments:\n  - {name: chat, model: smollm2-135m, backend: flask-transformers}\n"
                    "  - {name: tiny, model: 'qwen2.5:0.5b', backend: ollama}\n")  # fmt: skip
    fleet = fleets.load(path)
    served = {}
    for member in fleet.members:
        backend = member.spec.deployment.backend
        written = yaml.safe_load(fleets.member_file(fleet, member, tmp_path, backend).read_text())
        served[member.name] = (backends.get(backend).keeps_model_name, written.get("served_model_name"))
    # Ollama would copy the model under a new tag: the gateway rewrites `model` instead.
    assert served == {"chat": (False, "chat"), "tiny": (True, None)}


def test_only_multi_node_backends_lay_out_a_ray_deployment() -> None:
    dep = Deployment(model="m", gpus=4, ray=RaySettings(nodes=2), env={"VLLM_USE_RAY_V2_EXECUTOR_BACKEND": "0"})
    layout = backends.on_ray("auto").node_layout(dep, env={})  # type: ignore[union-attr]
    assert (layout.nodes, layout.gpus_per_node, layout.tensor_parallel, layout.pipeline_parallel) == (2, 4, 4, 2)
    assert layout.driver_needs_gpu  # the engine's own rule, from the deployment's env
    with pytest.raises(ConfigError, match="does not run across the nodes of a Ray cluster"):
        backends.get("flask-transformers").node_layout(dep)


def test_every_builtin_says_whether_a_pod_can_run_it() -> None:
    said = {b.name: b.container(version="1.2.3") for b in backends.loaded()}
    able = {name for name, c in said.items() if isinstance(c, Container)}
    assert able == {"flask-transformers", "flask-modelscope", "vllm"}
    assert all(isinstance(c, NoContainer) and c.why for name, c in said.items() if name not in able)
    builtin = said["flask-transformers"]
    assert isinstance(builtin, Container) and builtin.images == {"cpu": "modelserve:1.2.3", "cuda": "modelserve:1.2.3-cuda"}
