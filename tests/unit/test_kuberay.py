"""KubeRay manifests for a deployment with ray: golden files, and every one valid against the
RayCluster / RayService CRD schema of KubeRay (vendored, loaded strict: tests/kuberay_schema.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from launcher.core.deployment import Deployment, RaySettings
from launcher.core.errors import ConfigError
from launcher.k8s.kuberay import KINDS, Kind, kuberay_manifests, kuberay_name
from tests import kuberay_schema
from tests.golden import assert_golden

LLAMA = "meta-llama/Llama-2-7b-chat-hf"


def dep(nodes: int = 2, gpus: int = 4, image: str | None = None, **kw: Any) -> Deployment:
    kw.setdefault("name", "llama2")
    return Deployment(model=LLAMA, gpus=gpus, ray=RaySettings(nodes=nodes, image=image), **kw)


def valid(manifest: dict[str, Any]) -> dict[str, Any]:
    problems = kuberay_schema.errors(manifest)
    assert not problems, "\n".join(problems)
    return manifest


def test_ray_cluster_two_nodes_of_four_gpus_with_a_key() -> None:
    result = kuberay_manifests(dep(api_key="s3cret", max_model_len=4096, env={"NCCL_DEBUG": "WARN"}), "RayCluster")
    assert_golden("kuberay/raycluster-2x4-key.yaml", result.yaml())
    cluster = valid(result.manifests[0])
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    command = head["args"][0]
    assert "ray start --head --port=6379 --num-gpus=4" in command
    assert "exec vllm serve meta-llama/Llama-2-7b-chat-hf --host 0.0.0.0" in command
    assert "--tensor-parallel-size 4 --pipeline-parallel-size 2 --distributed-executor-backend ray" in command
    assert "s3cret" not in result.yaml()
    key = next(e for e in head["env"] if e["name"] == "VLLM_API_KEY")
    assert key["valueFrom"]["secretKeyRef"] == {"name": "llama2-secrets", "key": "vllm-api-key"}
    workers = cluster["spec"]["workerGroupSpecs"][0]
    assert workers["replicas"] == 1  # the head pod is GPU node 1 (vLLM runs beside its first worker)
    assert workers["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert cluster["metadata"]["annotations"] == {"ray.io/overwrite-container-cmd": "true"}


def test_ray_service_two_nodes_of_four_gpus() -> None:
    result = kuberay_manifests(dep(max_model_len=4096, dtype="bfloat16", served_model_name="llama"), "RayService",
                               namespace="models")  # fmt: skip
    assert_golden("kuberay/rayservice-2x4.yaml", result.yaml())
    service = valid(result.manifests[0])
    serve = yaml.safe_load(service["spec"]["serveConfigV2"])
    llm = serve["applications"][0]["args"]["llm_configs"][0]
    assert llm["engine_kwargs"]["tensor_parallel_size"] == 4 and llm["engine_kwargs"]["pipeline_parallel_size"] == 2
    assert llm["model_loading_config"] == {"model_id": "llama", "model_source": LLAMA}
    group = service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    assert (group["replicas"], group["rayStartParams"]) == (2, {"num-gpus": "4"})
    assert "http://llama2-serve-svc:8000/v1" in " ".join(result.notes)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("nodes", "gpus"), [(1, 8), (4, 2)])
def test_every_layout_renders_valid_manifests(kind: Kind, nodes: int, gpus: int) -> None:
    manifest = valid(kuberay_manifests(dep(nodes, gpus, image="registry.local/ray-llm:2.60.0"), kind).manifests[0])
    cluster = manifest["spec"] if kind == "RayCluster" else manifest["spec"]["rayClusterConfig"]
    pods = (1 if kind == "RayCluster" else 0) + sum(g["replicas"] for g in cluster.get("workerGroupSpecs", []))
    assert pods == nodes  # GPU pods: one per node of the layout
    images = {c["image"] for c in cluster["headGroupSpec"]["template"]["spec"]["containers"]}
    assert images == {"registry.local/ray-llm:2.60.0"}


def test_the_strict_schema_catches_a_misspelt_field_and_a_wrong_type() -> None:
    manifest = kuberay_manifests(dep(), "RayCluster").manifests[0]
    misspelt = copy.deepcopy(manifest)
    misspelt["spec"]["workerGroupSpecs"][0]["replica"] = misspelt["spec"]["workerGroupSpecs"][0].pop("replicas")
    wrong_type = copy.deepcopy(manifest)
    wrong_type["spec"]["workerGroupSpecs"][0]["rayStartParams"] = {"num-gpus": 4}
    assert kuberay_schema.errors(misspelt) == [
        "spec.workerGroupSpecs.0: Additional properties are not allowed ('replica' was unexpected)"]
    assert kuberay_schema.errors(wrong_type) == ["spec.workerGroupSpecs.0.rayStartParams.num-gpus: 4 is not of type "
                                                 "'string'"]  # fmt: skip


def test_what_a_kind_cannot_carry_is_refused() -> None:
    with pytest.raises(ConfigError, match="api_key: Ray Serve LLM's OpenAI app checks no API key"):
        kuberay_manifests(dep(api_key="k"), "RayService")
    with pytest.raises(ConfigError, match="KubeRay manifests need a ray: section"):
        kuberay_manifests(Deployment(model=LLAMA), "RayCluster")
    with pytest.raises(ConfigError, match="KubeRay allows at most 47 for a RayService"):
        kuberay_manifests(dep(name="x" * 48), "RayService")


@pytest.mark.parametrize(("given", "name"), [("Llama-2-7b-chat-hf", "llama-2-7b-chat-hf"), ("team.chat", "team-chat"),
                                             ("7b_model", "m-7b-model")])  # fmt: skip
def test_names_are_dns_1035_labels(given: str, name: str) -> None:
    assert kuberay_name(given, "RayCluster") == name


def test_one_ray_version_everywhere() -> None:
    # The managed CUDA env, the live-cluster test venv and the manifests' rayVersion/image agree.
    from backends.vllm import RAY_VERSION
    from launcher.core import resources
    from tests.envs import CLIENT_ENVS

    pins = resources.config_path("envs/vllm-cuda.txt").read_text().splitlines()
    assert f"ray=={RAY_VERSION}" in pins
    assert CLIENT_ENVS[f"ray-{RAY_VERSION}"] == [f"ray=={RAY_VERSION}"]


@pytest.mark.parametrize("kind", KINDS)
def test_k8s_render_turns_a_ray_spec_into_kuberay_and_config_reads_its_service(kind: Kind) -> None:
    """`modelserve k8s render -c configs/vllm-ray.yaml --ray-kind KIND`, the example in configs/."""
    from pathlib import Path

    from launcher.lifecycle import clients
    from launcher.lifecycle.specs import k8s_render

    example = Path(__file__).resolve().parents[2] / "configs" / "vllm-ray.yaml"
    result = k8s_render(example, namespace="models", ray_kind=kind, version="test")
    (file,) = result.files
    docs = [d for d in yaml.safe_load_all(file.content) if d]
    assert [d["kind"] for d in docs if d["apiVersion"] == "ray.io/v1"] == [kind]
    for doc in docs:
        if doc["apiVersion"] == "ray.io/v1":
            valid(doc)
    service = "llama70b-head-svc" if kind == "RayCluster" else "llama70b-serve-svc"
    rendered = clients.config_for(result.record, "openai-env")
    assert f"OPENAI_BASE_URL=http://{service}.models.svc.cluster.local:" in rendered.text
    with pytest.raises(ConfigError, match="not a KubeRay kind"):
        k8s_render(example, ray_kind="RayJob")
