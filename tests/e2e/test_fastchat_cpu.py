"""FastChat for real on CPU: `modelserve env create fastchat` -> `up -b fastchat` (controller,
worker, API server, each gated) -> sensible chat -> a stream in several chunks -> AgentScope 0.1.6
through the written openai_chat entry -> `down` leaves no FastChat process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil
import pytest
import requests

from launcher.process import ports
from tests.e2e.conftest import ask_agentscope

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.usefixtures("cleanup_deployments")]


def fastchat_processes() -> list[psutil.Process]:
    out = []
    for proc in psutil.process_iter(["cmdline"]):
        if proc.pid != os.getpid() and "fastchat.serve" in " ".join(proc.info["cmdline"] or []):
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    out.append(proc)
            except psutil.Error:
                continue
    return out


def test_fastchat_on_cpu(tmp_path: Path, in_tmp: Path, modelserve, smollm2_dir: Path, agentscope_python: str) -> None:
    created = modelserve("env", "create", "fastchat", "--variant", "cpu", timeout=1800)
    assert "fschat 0.2.36" in created.stdout

    port = ports.free_port()
    config = tmp_path / "model_config.json"
    spec_file = tmp_path / "fc.yaml"
    # The full ID as served name: FastChat would serve the folder's basename unless told.
    spec_file.write_text(
        f"model: {smollm2_dir}\nname: fc\nbackend: fastchat\ndevice: cpu\nserved_model_name: HuggingFaceTB/SmolLM2\n"
        "api_key: fc-key\ntimeout: 300\nagentscope:\n  temperature: 0\n  max_tokens: 64\n"
    )
    up = json.loads(modelserve("up", "-c", str(spec_file), "-p", str(port), "--agentscope-config", str(config),
                               "--json").stdout)  # fmt: skip
    record = up["deployment"]
    assert [p["role"] for p in record["processes"]] == ["controller", "worker", "api", "front"]
    assert record["engine"]["conv_template"] == "qwen-7b-chat"
    assert any("ChatML" in note for note in record["notes"])
    assert len(fastchat_processes()) == 3
    for proc in fastchat_processes():  # the key reaches the API server through its environment only
        assert "fc-key" not in " ".join(proc.cmdline())

    base = f"http://127.0.0.1:{port}/v1"
    auth = {"Authorization": "Bearer fc-key"}
    question = [{"role": "user", "content": "What is the capital of France?"}]
    assert requests.get(f"{base}/models", timeout=30).status_code == 401
    plain = requests.post(f"{base}/chat/completions", headers=auth, timeout=120, json={
        "model": "HuggingFaceTB/SmolLM2", "messages": question, "max_tokens": 24, "temperature": 0})  # fmt: skip
    assert plain.status_code == 200, plain.text
    answer = plain.json()["choices"][0]["message"]["content"]
    assert "Paris" in answer
    assert plain.json()["usage"]["prompt_tokens"] < 60  # ChatML, not the 475-token one_shot template

    with requests.post(f"{base}/chat/completions", headers=auth, stream=True, timeout=120, json={
            "model": "HuggingFaceTB/SmolLM2", "messages": [{"role": "user", "content": "Name three colors."}],
            "max_tokens": 24, "temperature": 0, "stream": True}) as stream:  # fmt: skip
        assert stream.status_code == 200
        events = [line for line in stream.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    pieces = [json.loads(e[6:])["choices"][0]["delta"].get("content") or "" for e in events[:-1]]
    assert len([p for p in pieces if p]) >= 3, pieces
    assert "".join(pieces).strip()

    (reply,) = ask_agentscope(agentscope_python, config, "What is the capital of France?", "fc-openai")
    assert reply["model_type"] == "openai_chat" and "Paris" in reply["text"], reply

    assert "Register to controller" in modelserve("logs", "fc", "--process", "worker", "-n", "200").stdout
    # LOGDIR: FastChat's own log files go to the deployment's log folder, not the working directory.
    assert not list(in_tmp.glob("*.log"))
    assert (Path(record["log_dir"]) / "openai_api_server.log").exists()
    modelserve("down", "fc")
    assert fastchat_processes() == []
    assert ports.is_free("127.0.0.1", port)
