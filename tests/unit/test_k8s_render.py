"""`modelserve k8s render`: whole manifests against golden files (UPDATE_GOLDEN=1 rewrites them),
and the planning rules behind them: the API key only in Secrets, probes from the backend's
readiness probes, resources from the memory estimate, GPUs from the spec (never this machine's)."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from backends.probes import HttpOk, OpenAIChatAnswers, OpenAIModelListed, PostLlmAnswers
from launcher import devices
from launcher.core.errors import ConfigError, DeviceError
from launcher.k8s.render import K8sRender, remember
from launcher.k8s.workload import k8s_name, map_checks
from launcher.lifecycle import clients
from launcher.lifecycle.specs import k8s_render
from launcher.store import records
from tests.golden import assert_golden
from tests.k8s_cases import API_KEY, CASES, Case, fixture_gpus, model_folders, write_spec


def render(tmp_path: Path, case: Case, monkeypatch: pytest.MonkeyPatch, gpus: list[devices.Gpu]) -> K8sRender:
    monkeypatch.setattr(devices, "discover", lambda *a, **k: list(gpus))
    path = write_spec(case, tmp_path)
    source = path.name  # the header names the file as the user gave it
    return k8s_render(path, namespace="models", kustomize=case.kustomize, source=source, version="0.1.0")


def stream(result: K8sRender) -> str:
    return "".join(f"# ==> {f.name} (mode {f.mode:o}) <==\n{f.content}" for f in result.files)


def docs(result: K8sRender) -> dict[str, dict[str, Any]]:
    return {f.name: yaml.safe_load(f.content) for f in result.files}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = render(tmp_path, case, monkeypatch, fixture_gpus(case))
    assert_golden(f"k8s/{case.name}.yaml", stream(result))
    # This machine's GPUs (the fixture's, or none) make no difference: the spec decides.
    other = render(tmp_path / "again", case, monkeypatch, [] if case.gpus_csv else fixture_gpus(CASES[2]))
    assert stream(other) == stream(result)


def container(result: K8sRender, name: str) -> dict[str, Any]:
    deployment = docs(result)[f"{name}-deployment.yaml"]
    found: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return found


def test_gpu_requests_follow_the_tensor_parallel_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = render(tmp_path, CASES[2], monkeypatch, fixture_gpus(CASES[2]))
    c = container(result, "llama2-tp")
    assert c["command"][:3] == ["vllm", "serve", "/models/Llama-2-7b-chat-hf"]
    assert c["command"][c["command"].index("--tensor-parallel-size") + 1] == "4"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == c["resources"]["requests"]["nvidia.com/gpu"] == "4"
    # 1800 s of loading allowed before the kubelet restarts it: the spec's timeout.
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] == 1800
    # Llama-2-7b in bfloat16 is ~12.6 GiB of weights: host memory for loading, plus /dev/shm.
    assert c["resources"]["requests"]["memory"] == "19Gi"


def test_the_api_key_is_only_in_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = render(tmp_path, CASES[3], monkeypatch, [])
    for f in result.files:
        assert API_KEY not in f.content, f.name
    parsed = docs(result)
    secret = parsed["smol-secure-api-key-secret.yaml"]
    assert base64.b64decode(secret["data"]["api-key"]).decode() == API_KEY
    env = {e["name"]: e for e in container(result, "smol-secure")["env"]}
    assert env["MODELSERVE_API_KEY"] == {"name": "MODELSERVE_API_KEY", "valueFrom": {"secretKeyRef": {
        "name": "smol-secure-api-key", "key": "api-key"}}}  # fmt: skip
    # The agent config holds the key too, so it is a Secret, not a ConfigMap.
    agent = parsed["smol-secure-agent-config.yaml"]
    assert agent["kind"] == "Secret"
    entries = json.loads(base64.b64decode(agent["data"]["model_config.json"]))
    assert {e["model_type"] for e in entries} == {"post_api_chat", "openai_chat"}
    assert entries[0]["headers"] == {"Authorization": f"Bearer {API_KEY}"}
    assert entries[0]["api_url"] == "http://smol-secure.models.svc.cluster.local:8080/llm/"
    modes = {f.name: f.mode for f in result.files}
    assert modes["smol-secure-api-key-secret.yaml"] == modes["smol-secure-agent-config.yaml"] == 0o600
    # The kubelet cannot send the key: every probe asks the open /health path.
    c = container(result, "smol-secure")
    assert {c[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")} == {"/health"}


def test_the_agent_config_map_points_at_the_services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = render(tmp_path, CASES[4], monkeypatch, [])
    parsed = docs(result)
    agent = parsed["team-agent-config.yaml"]
    assert agent["kind"] == "ConfigMap"
    entries = json.loads(agent["data"]["model_config.json"])
    urls = {e["config_name"]: e.get("api_url") or e["client_args"]["base_url"] for e in entries}
    assert urls == {
        "team-chat-post": "http://team-chat.models.svc.cluster.local:8000/llm/",
        "team-chat-openai": "http://team-chat.models.svc.cluster.local:8000/v1/",
        "team-coder-openai": "http://team-coder.models.svc.cluster.local:8000/v1/",
        "team-llama-big-openai": "http://team-big.models.svc.cluster.local:8000/v1/",
    }
    services = {d["metadata"]["name"] for d in parsed.values() if d["kind"] == "Service"}
    assert services == {"team-chat", "team-coder", "team-big"}  # one per member, no gateway
    assert parsed["kustomization.yaml"]["resources"] == [f.name for f in result.files[:-1]]
    assert any("no gateway in Kubernetes" in n for n in result.notes)


def test_a_hub_id_is_downloaded_into_the_claim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An ID in the local HF cache: metadata is read here, the pod gets the ID and no offline flags."""
    snapshot = tmp_path / "hub" / "models--meta-llama--Llama-2-7b-chat-hf" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text((Path(model_folders(tmp_path)["llama"]) / "config.json").read_text())
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    spec = tmp_path / "hub.yaml"
    spec.write_text("model: meta-llama/Llama-2-7b-chat-hf\nname: llama\nbackend: vllm\ndevice: cuda\n")
    result = k8s_render(spec, version="0.1.0")
    c = container(result, "llama")
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert c["command"][2] == "meta-llama/Llama-2-7b-chat-hf"
    assert "HF_HUB_OFFLINE" not in env and env["HF_HOME"] == "/models/huggingface"
    assert "memory" in c["resources"]["requests"]  # estimated from the cached config.json
    assert str(snapshot) not in "".join(f.content for f in result.files)


def test_an_id_not_cached_here_gets_default_storage_and_no_memory_request(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "empty-ms"))
    spec = tmp_path / "remote.yaml"
    spec.write_text("model: Qwen/Qwen2.5-7B-Instruct\nbackend: vllm\ndevice: cuda\n")
    result = k8s_render(spec, version="0.1.0")
    c = container(result, "qwen2-5-7b-instruct")
    assert "memory" not in c["resources"]["requests"] and "limits" in c["resources"]
    assert docs(result)["qwen2-5-7b-instruct-models-pvc.yaml"]["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert any("no memory estimate" in n for n in result.notes)


def spec_file(tmp_path: Path, text: str) -> Path:
    folders = model_folders(tmp_path / "models")
    path = tmp_path / "spec.yaml"
    path.write_text(text.format(**{k: str(v) for k, v in folders.items()}))
    return path


@pytest.mark.parametrize(("backend", "why"), [("fastchat", "three processes"), ("ollama", "pulls its model")])
def test_backends_that_cannot_run_as_one_pod_are_refused(tmp_path: Path, backend: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as err:
        k8s_render(spec_file(tmp_path, f"model: {{smol}}\nbackend: {backend}\ndevice: cpu\n"), version="0.1.0")
    assert err.value.exit_code == 3 and "vllm" in (err.value.hint or "")


def test_vllm_on_the_cpu_needs_an_image(tmp_path: Path) -> None:
    path = spec_file(tmp_path, "model: {smol}\nbackend: vllm\ndevice: cpu\n")
    with pytest.raises(ConfigError, match="no published image for the CPU"):
        k8s_render(path, version="0.1.0")
    result = k8s_render(path, images={"vllm": "registry.local/vllm-cpu:v0.33.0"}, version="0.1.0")
    c = container(result, "smollm2-135m-instruct")
    assert c["image"] == "registry.local/vllm-cpu:v0.33.0" and "--enforce-eager" in c["command"]


def test_a_tensor_parallel_size_that_splits_heads_unevenly_is_refused(tmp_path: Path) -> None:
    path = spec_file(tmp_path, "model: {llama}\nbackend: vllm\ndevice: cuda\ngpus: 3\n")
    with pytest.raises(DeviceError, match="tensor parallel 3 does not divide the model's 32 attention heads"):
        k8s_render(path, version="0.1.0")


def test_a_ray_deployment_is_rendered_as_kuberay(tmp_path: Path) -> None:
    path = spec_file(tmp_path, "model: {llama}\nbackend: vllm\ndevice: cuda\ngpus: 2\nray:\n  nodes: 2\n")
    (file,) = k8s_render(path, version="0.1.0").files
    assert [d["kind"] for d in yaml.safe_load_all(file.content) if d and d.get("apiVersion") == "ray.io/v1"] == ["RayCluster"]


def test_a_path_of_this_machine_left_in_the_command_is_an_error(tmp_path: Path, modelserve_home: Path) -> None:
    path = spec_file(tmp_path, f"model: {{smol}}\ndevice: cpu\nenv:\n  TRITON_CACHE_DIR: {modelserve_home}/triton\n")
    with pytest.raises(ConfigError, match="still names a path on this machine"):
        k8s_render(path, version="0.1.0")


def test_bad_namespace_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a Kubernetes namespace"):
        k8s_render(spec_file(tmp_path, "model: {smol}\n"), namespace="Models_1", version="0.1.0")


@pytest.mark.parametrize(("given", "name"), [("Llama-2-7b-chat-hf", "llama-2-7b-chat-hf"), ("team.chat", "team-chat"),
                                             ("7b_model", "m-7b-model"), ("Qwen2.5", "qwen2-5")])  # fmt: skip
def test_kubernetes_names(given: str, name: str) -> None:
    assert k8s_name(given) == name


def test_a_name_too_long_for_kubernetes_is_refused() -> None:
    with pytest.raises(ConfigError, match="set a shorter `name:`"):
        k8s_name("a" * 51)


def test_probe_mapping() -> None:
    base = "http://127.0.0.1:8000"
    plain = map_checks([OpenAIModelListed(base, None, model="m"), PostLlmAnswers(base), OpenAIChatAnswers(base)],
                       api_key=None, health="/health", budget=600)  # fmt: skip
    assert (plain.startup, plain.ready, plain.live, plain.startup_seconds) == ("/v1/models", "/v1/models", "/health", 600)
    keyed = map_checks([OpenAIModelListed(base, "k", model="m")], api_key="k", health="/health", budget=90.5)
    assert (keyed.startup, keyed.ready, keyed.startup_seconds) == ("/health", "/health", 91)
    assert map_checks([HttpOk(base, path="/ready")], api_key=None, health="/health", budget=1).ready == "/ready"
    with pytest.raises(ConfigError, match="none of the backend's readiness probes"):
        map_checks([OpenAIChatAnswers(base, model="m")], api_key=None, health="/health", budget=1)


def test_config_prefers_a_running_deployment_and_k8s_picks_the_render(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    result = render(tmp_path, CASES[0], monkeypatch, [])
    remember(result)
    found, notes = clients.find_record("smol")
    assert found.status == "rendered" and "namespace models" in notes[0]
    # The same name running here: `config smol` is about that one, and says --k8s picks the render.
    local = dataclasses.replace(result.record, status="ready", base_url="http://127.0.0.1:8000",
                                client_endpoints=[{"kind": "openai_chat", "url": "http://127.0.0.1:8000/v1",
                                                   "model_name": "smol", "api_key": None}])  # fmt: skip
    records.save(local)
    found, notes = clients.find_record("smol")
    assert found.base_url == "http://127.0.0.1:8000" and notes == ["smol is also rendered for Kubernetes: --k8s gives that config"]
    found, _ = clients.find_record("smol", k8s=True)
    text = clients.config_for(found, "openai-env").text
    assert text.startswith("OPENAI_BASE_URL=http://smol.models.svc.cluster.local:8000/v1\n")


def test_an_image_for_an_unknown_backend_is_refused(tmp_path: Path) -> None:
    path = spec_file(tmp_path, "model: {smol}\ndevice: cpu\n")
    with pytest.raises(ConfigError, match="vlm is not a backend rendered for Kubernetes"):
        k8s_render(path, images={"vlm": "x/y:1"}, version="0.1.0")
    result = k8s_render(path, images={"*": "registry.local/modelserve:dev"}, version="0.1.0")
    assert container(result, "smollm2-135m-instruct")["image"] == "registry.local/modelserve:dev"
    assert result.notes[0].startswith("smollm2-135m-instruct: copy ") and "into its claim as /models/SmolLM2" in result.notes[0]


def test_config_names_entries_as_the_config_map_does(tmp_path: Path) -> None:
    path = spec_file(tmp_path, "model: {smol}\nname: smol\ndevice: cpu\nagentscope:\n  config_name: team-llm\n")
    result = k8s_render(path, version="0.1.0")
    remember(result)
    in_map = json.loads(docs(result)["smol-agent-config.yaml"]["data"]["model_config.json"])
    record, _ = clients.find_record("smol")
    printed = json.loads(clients.config_for(record, "agentscope").text)
    assert printed == in_map and [e["config_name"] for e in printed] == ["team-llm-post", "team-llm-openai"]
