"""An embedding deployment for real: `modelserve up -m all-minilm-l6-v2` (the built-in server,
task embed detected from the alias) -> the AgentScope entries `up` wrote, used by AgentScope 0.1.6
(openai_embedding; post_api_embedding once registered) -> the 1.x snippet `config --format
agentscope-v1` prints, used by AgentScope 1.0.21 -> `status` and `down`. One server."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from launcher.process import ports
from tests.e2e.conftest import client_lines, client_python, modelserve_cmd

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NAME = "emb"
TEXTS = ["A man is eating food.", "The stock market fell sharply today."]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Any:
    """`up` once for the module, in its own MODELSERVE_HOME; `down` at the end."""
    import os

    home = tmp_path_factory.mktemp("emb-home")
    work = tmp_path_factory.mktemp("emb-work")
    env = {**os.environ, "MODELSERVE_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    port = ports.free_port()

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*modelserve_cmd(), *args], capture_output=True, text=True, env=env, cwd=work,
                              timeout=900)  # fmt: skip
        assert not check or proc.returncode == 0, f"modelserve {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
        return proc

    up = json.loads(run("up", "-m", "all-minilm-l6-v2", "-p", str(port), "--name", NAME, "--json").stdout)
    try:
        yield {"up": up, "run": run, "url": f"http://127.0.0.1:{port}", "config": work / "model_config.json",
               "work": work}  # fmt: skip
    finally:
        run("down", NAME, check=False)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))


def direct(url: str) -> list[list[float]]:
    r = requests.post(url + "/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": TEXTS}, timeout=60)
    return [d["embedding"] for d in r.json()["data"]]


def test_up_detects_the_task_and_writes_embedding_entries(deployment: Any) -> None:
    record = deployment["up"]["deployment"]
    assert (record["task"], record["backend"]) == ("embed", "flask-transformers")
    assert deployment["up"]["config_names"] == [f"{NAME}-openai", f"{NAME}-post"]
    entries = json.loads(deployment["config"].read_text())
    assert [e["model_type"] for e in entries] == ["openai_embedding", "post_api_embedding"]
    assert all("temperature" not in json.dumps(e) for e in entries)
    status = json.loads(deployment["run"]("status", "--json").stdout)["deployments"][0]
    assert (status["state"], status["health"]) == ("running", "ok")


def test_agentscope_016_embeds_through_the_written_entries(deployment: Any, agentscope_python: str) -> None:
    lines = client_lines(agentscope_python, "agentscope_016_embedding.py", str(deployment["config"]),
                         f"{NAME}-openai,{NAME}-post", *TEXTS)  # fmt: skip
    assert [x["model_type"] for x in lines] == ["openai_embedding", "post_api_embedding"]
    reference = direct(deployment["url"])
    for line in lines:
        assert [len(v) for v in line["vectors"]] == [384, 384]
        assert all(cosine(got, want) > 0.9999 for got, want in zip(line["vectors"], reference, strict=True))


def test_agentscope_1x_embeds_with_the_snippet(deployment: Any) -> None:
    snippet = deployment["run"]("config", NAME, "--format", "agentscope-v1").stdout
    assert "dimensions=384," in snippet
    path = deployment["work"] / "embed_v1.py"
    path.write_text(snippet)
    script = path.with_name("use_embed_v1.py")
    script.write_text(
        "import asyncio, json, sys\n"
        "ns = {}\n"
        "exec(open(sys.argv[1]).read(), ns)\n"
        "res = asyncio.run(ns['embedding'](sys.argv[2:]))\n"
        "print(json.dumps({'class': type(ns['embedding']).__name__, 'vectors': res.embeddings,"
        " 'tokens': res.usage.tokens}))\n"
    )  # fmt: skip
    python = client_python("agentscope-1.0.21")
    proc = subprocess.run([python, str(script), str(path), *TEXTS], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reply = json.loads(proc.stdout.splitlines()[-1])
    assert reply["class"] == "OpenAITextEmbedding" and reply["tokens"] > len(TEXTS)
    reference = direct(deployment["url"])
    assert all(cosine(got, want) > 0.9999 for got, want in zip(reply["vectors"], reference, strict=True))
