"""Embeddings from an Ollama deployment, against the Ollama stand-in (its /api/embed, /api/embeddings
and /v1/embeddings as Ollama's docs describe them; no model, so the numbers mean nothing):
`up -m all-minilm -b ollama --task embed` pulls it, probes it with a one-input embedding, writes
ollama_embedding and openai_embedding entries that AgentScope 0.1.6 uses; then a fleet with a chat
member and that embedding member behind one gateway."""

from __future__ import annotations

import base64
import json
import math
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from launcher.process import ports
from tests.e2e.conftest import client_lines, modelserve_cmd
from tests.ollama_standin.harness import env_with_standin
from tests.procs import with_home

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.usefixtures("cleanup_deployments")]


@pytest.fixture()
def ms(cli_env: dict[str, str], tmp_path: Path) -> Any:
    env = {**env_with_standin(cli_env), "OLLAMA_MODELS": str(tmp_path / "ollama-models")}
    work = tmp_path / "work"
    work.mkdir()

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*modelserve_cmd(), *args], capture_output=True, text=True, env=env, cwd=work,
                              timeout=300)  # fmt: skip
        assert not check or proc.returncode == 0, f"modelserve {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
        return proc

    run.work = work  # type: ignore[attr-defined]
    return run


def norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


def test_up_embeds_on_both_apis_and_agentscope_uses_the_entries(ms: Any, agentscope_python: str,
                                                                 modelserve_home: Path) -> None:  # fmt: skip
    port = ports.free_port()
    base = f"http://127.0.0.1:{port}"
    up = json.loads(ms("up", "-m", "all-minilm", "-b", "ollama", "--task", "embed", "-p", str(port), "--name", "oe",
                       "--json").stdout)  # fmt: skip
    assert (up["deployment"]["task"], up["config_names"]) == ("embed", ["oe-ollama", "oe-openai"])
    native = requests.post(f"{base}/api/embed", json={"model": "all-minilm", "input": ["a", "b"]}, timeout=30).json()
    assert [len(v) for v in native["embeddings"]] == [384, 384]
    assert abs(norm(native["embeddings"][0]) - 1) < 1e-5
    floats = requests.post(f"{base}/v1/embeddings", json={"model": "all-minilm", "input": "a"}, timeout=30).json()
    packed = requests.post(f"{base}/v1/embeddings", json={"model": "all-minilm", "input": "a",
                                                          "encoding_format": "base64"}, timeout=30).json()  # fmt: skip
    decoded = list(struct.unpack("<384f", base64.b64decode(packed["data"][0]["embedding"])))
    assert decoded == pytest.approx(floats["data"][0]["embedding"], abs=1e-6) == native["embeddings"][0]
    short = requests.post(f"{base}/api/embed", json={"model": "all-minilm", "input": "a", "dimensions": 128},
                          timeout=30).json()["embeddings"][0]  # fmt: skip
    assert len(short) == 128 and abs(norm(short) - 1) < 1e-5
    refused = requests.post(f"{base}/api/chat", json={"model": "all-minilm", "messages": [{"role": "user",
                                                      "content": "hi"}], "stream": False}, timeout=30)  # fmt: skip
    assert refused.status_code == 400 and "does not support chat" in refused.json()["error"]

    lines = client_lines(agentscope_python, "agentscope_016_embedding.py", str(ms.work / "model_config.json"),
                         "oe-ollama,oe-openai", "a")  # fmt: skip
    assert [x["model_type"] for x in lines] == ["ollama_embedding", "openai_embedding"]
    assert [len(x["vectors"][0]) for x in lines] == [384, 384]
    ms("down", "oe")
    assert with_home(modelserve_home) == []


def test_a_fleet_serves_a_chat_and_an_ollama_embedding_member(ms: Any, modelserve_home: Path) -> None:
    port = ports.free_port()
    (ms.work / "fleet.yaml").write_text(
        f"name: oll\ngateway: {{port: {port}}}\ndeployments:\n"
        "  - {name: chat, model: qwen2.5:0.5b, backend: ollama}\n"
        "  - {name: minilm, model: all-minilm, backend: ollama, task: embed}\n"
    )  # fmt: skip
    up = json.loads(ms("up", "-c", "fleet.yaml", "--json").stdout)
    assert up["config_names"] == ["oll-chat-openai", "oll-minilm-openai"]
    entries = {e["config_name"]: e["model_type"] for e in json.loads((ms.work / "model_config.json").read_text())}
    assert entries == {"oll-chat-openai": "openai_chat", "oll-minilm-openai": "openai_embedding"}
    base = f"http://127.0.0.1:{port}/v1"
    chat = requests.post(f"{base}/chat/completions", json={"model": "chat", "messages": [{"role": "user",
                         "content": "hello"}]}, timeout=300).json()  # fmt: skip
    assert chat["choices"][0]["message"]["content"].startswith("Stand-in reply from qwen2.5:0.5b")
    vectors = requests.post(f"{base}/embeddings", json={"model": "minilm", "input": ["x", "y"]}, timeout=300).json()
    assert [len(d["embedding"]) for d in vectors["data"]] == [384, 384]
    ms("down", "oll")
    assert with_home(modelserve_home) == []
