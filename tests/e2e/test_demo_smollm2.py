"""The whole flow for real: `modelserve up -m smollm2-135m` -> sensible answers over /llm/ and
/v1 -> the real AgentScope 0.1.6 client replies through both written entries -> `down` leaves
no process behind."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest
import requests

from launcher.process import ports
from tests.e2e.conftest import ask_agentscope
from tests.procs import with_marker

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("cleanup_deployments")]

QUESTION = "What is the capital of France?"




def test_demo_end_to_end(tmp_path: Path, in_tmp: Path, modelserve, agentscope_python: str) -> None:
    port = ports.free_port()
    config = tmp_path / "model_config.json"
    theirs = {"config_name": "my-gpt", "model_type": "openai_chat", "model_name": "gpt-4o", "api_key": "sk-keep"}
    config.write_text(json.dumps([theirs], indent=2))

    # Greedy entries: a 135M model sampling at 0.7 rambles, and the test wants a checkable answer.
    spec_file = tmp_path / "demo.yaml"
    spec_file.write_text("model: smollm2-135m\nagentscope:\n  temperature: 0\n  max_tokens: 48\n")
    up = modelserve("up", "-c", str(spec_file), "-p", str(port), "--agentscope-config", str(config), "--json")
    summary = json.loads(up.stdout)
    record = summary["deployment"]
    assert record["served_model_name"] == "smollm2-135m"
    assert summary["backend_reason"] == "no GPU found: flask-transformers on CPU"
    assert summary["config_names"] == ["smollm2-135m-post", "smollm2-135m-openai"]
    assert psutil.pid_exists(record["processes"][0]["pid"])  # `up` exited, the server runs on

    base = f"http://127.0.0.1:{port}"
    post = requests.post(f"{base}/llm/", json={"messages": [{"role": "user", "content": QUESTION}],
                                               "max_new_tokens": 24, "do_sample": False}, timeout=120)  # fmt: skip
    assert post.status_code == 200
    assert "Paris" in post.json()["data"]["response"]["choices"][0]["message"]["content"]

    chat = requests.post(f"{base}/v1/chat/completions", json={
        "model": "smollm2-135m", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 24,
        "temperature": 0}, timeout=120)  # fmt: skip
    assert chat.status_code == 200
    body = chat.json()
    assert "Paris" in body["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens"] > 0

    written = json.loads(config.read_text())
    assert [e["config_name"] for e in written] == ["my-gpt", "smollm2-135m-post", "smollm2-135m-openai"]
    assert written[0] == theirs

    replies = ask_agentscope(agentscope_python, config, QUESTION, "smollm2-135m-post", "smollm2-135m-openai")
    assert [r["model_type"] for r in replies] == ["post_api_chat", "openai_chat"]
    for reply in replies:
        assert "Paris" in reply["text"], reply

    status = json.loads(modelserve("status", "--json").stdout)["deployments"]
    assert [(s["name"], s["state"], s["health"]) for s in status] == [("smollm2-135m", "running", "ok")]

    assert modelserve("health", "smollm2-135m").returncode == 0
    modelserve("down", "smollm2-135m", "--forget-config")
    assert with_marker(record["marker"]) == []
    assert json.loads(config.read_text()) == [theirs]
    assert ports.is_free("127.0.0.1", port)
