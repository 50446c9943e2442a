"""A real fleet: two built-in SmolLM2 members with different served names behind one gateway,
started with `modelserve up -c fleet.yaml`, used by plain HTTP and by the real AgentScope 0.1.6
client through the config `up` wrote, then `down` leaving nothing (psutil)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from launcher.process import ports
from tests.e2e.conftest import ask_agentscope, modelserve_cmd
from tests.ollama_standin.harness import env_with_standin
from tests.procs import FakeSystemd, with_home

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.usefixtures("cleanup_deployments")]
CHAT = {"messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 12,
        "temperature": 0}  # fmt: skip


def fleet_file(folder: Path, model: Path, port: int, policy: str, chat_extra: str = "") -> Path:
    path = folder / "fleet.yaml"
    path.write_text(
        f"name: lab\ngateway: {{port: {port}}}\npolicy: {policy}\ndeployments:\n"
        f"  - {{name: chat, model: {model}, backend: flask-transformers, threads: 1{chat_extra}}}\n"
        f"  - {{name: coder, model: {model}, backend: flask-transformers, served_model_name: coder-v1, threads: 1}}\n"
    )
    return path


def fleet_state(base: str) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in requests.get(f"{base}/fleet", timeout=10).json()["members"]}


def test_a_fleet_routes_starts_once_swaps_recovers_and_leaves_nothing(
    modelserve: Any, smollm2_dir: Path, in_tmp: Path, modelserve_home: Path, agentscope_python: str
) -> None:
    port = ports.free_port()
    base = f"http://127.0.0.1:{port}"
    path = fleet_file(in_tmp, smollm2_dir, port, "{max_loaded: 1, idle_ttl: 0}")
    up = json.loads(modelserve("up", "-c", str(path), "--json").stdout)
    assert up["config_names"] == ["lab-chat-openai", "lab-chat-post", "lab-coder-v1-openai", "lab-coder-v1-post"]

    # Every member is listed before any is loaded; none runs yet.
    ids = [m["id"] for m in requests.get(f"{base}/v1/models", timeout=10).json()["data"]]
    assert ids == ["chat", "coder-v1"]
    assert {m["state"] for m in fleet_state(base).values()} == {"stopped"}

    # 8 concurrent requests to the cold member: it starts once, all are answered.
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: requests.post(f"{base}/v1/chat/completions", json={"model": "chat", **CHAT},
                                                        timeout=300), range(8)))  # fmt: skip
    assert [r.status_code for r in replies] == [200] * 8, replies[0].text
    assert len({r.json()["choices"][0]["message"]["content"] for r in replies}) == 1  # greedy: the same answer
    assert replies[0].json()["model"] == "chat"
    state = fleet_state(base)
    assert (state["chat"]["state"], state["chat"]["loads"], state["chat"]["requests"]) == ("ready", 1, 8)

    # max_loaded 1: the other member's first request stops chat first, then answers (streamed).
    with requests.post(f"{base}/v1/chat/completions", json={"model": "coder-v1", "stream": True, **CHAT},
                       stream=True, timeout=300) as r:  # fmt: skip
        assert r.status_code == 200
        events = [line for line in r.iter_lines() if line.startswith(b"data: ")]
    assert len(events) > 3 and events[-1] == b"data: [DONE]"
    state = fleet_state(base)
    assert (state["chat"]["state"], state["coder"]["state"]) == ("stopped", "ready")
    log = (modelserve_home / "deployments" / "lab" / "logs" / "gateway.log").read_text()
    assert log.index("unloading chat (making room for coder)") < log.index("loading coder")

    # A client that goes away mid-stream: the gateway closes the upstream request and the member
    # stops generating for it (its row leaves the batch long before 400 tokens).
    member_log = modelserve_home / "deployments" / "lab.coder" / "logs" / "server.log"
    with requests.post(f"{base}/v1/chat/completions", stream=True, timeout=300,
                       json={"model": "coder-v1", "stream": True, **CHAT, "max_tokens": 400, "min_tokens": 400}) as r:  # fmt: skip
        lines = r.iter_lines()
        assert all(next(lines) is not None for _ in range(4))  # a few chunks arrived, then the client hangs up
    deadline = time.monotonic() + 30
    while "client went away" not in member_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    went = [line for line in member_log.read_text().splitlines() if "client went away" in line]
    assert went and int(went[-1].split("after ")[1].split(" ")[0]) < 400, went

    # The real AgentScope 0.1.6 client through two entries of the written config, via the gateway.
    answers = ask_agentscope(agentscope_python, in_tmp / "model_config.json", "What is the capital of France?",
                             "lab-chat-post", up["config_names"][2])  # fmt: skip
    assert [a["model_type"] for a in answers] == ["post_api_chat", "openai_chat"]
    assert all(a["text"].strip() for a in answers), answers

    # kill -9 of an idle member: the next request starts it again.
    loads = fleet_state(base)["coder"]["loads"]  # the client's two entries swapped the members again
    record = json.loads((modelserve_home / "deployments" / "lab.coder" / "state.json").read_text())
    os.kill(record["processes"][-1]["pid"], signal.SIGKILL)
    r = requests.post(f"{base}/v1/chat/completions", json={"model": "coder-v1", **CHAT}, timeout=300)
    assert r.status_code == 200, r.text
    state = fleet_state(base)
    assert state["coder"]["loads"] == loads + 1 and state["coder"]["errors"] >= 1

    # Unknown models get an OpenAI-shaped 404 naming what is served; metrics per member.
    r = requests.post(f"{base}/v1/chat/completions", json={"model": "gpt-4", **CHAT}, timeout=10)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    assert "chat, coder-v1" in r.json()["error"]["message"]
    metrics = requests.get(f"{base}/metrics", timeout=10).text
    assert f'modelserve_gateway_loads_total{{member="coder"}} {loads + 1}.0' in metrics
    assert 'modelserve_gateway_requests_total{code="200",member="chat"} ' in metrics
    status = modelserve("status").stdout
    assert "lab: coder (coder-v1) loaded" in status and "lab: chat (chat) stopped" in status

    assert with_home(modelserve_home)
    modelserve("down", "lab")
    deadline = time.monotonic() + 30
    while with_home(modelserve_home) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert with_home(modelserve_home) == []
    assert not list((modelserve_home / "deployments").glob("*/state.json"))


def test_a_preloaded_member_unloads_after_its_idle_ttl(modelserve: Any, smollm2_dir: Path, in_tmp: Path,
                                                        modelserve_home: Path) -> None:  # fmt: skip
    port = ports.free_port()
    base = f"http://127.0.0.1:{port}"
    path = fleet_file(in_tmp, smollm2_dir, port, "{idle_ttl: 2}", chat_extra=", preload: true")
    text = modelserve("up", "-c", str(path)).stdout
    assert "chat" in text and "loaded" in text
    assert fleet_state(base)["chat"]["state"] == "ready"  # preloaded: up waited for it
    pid = json.loads((modelserve_home / "deployments" / "lab.chat" / "state.json").read_text())["processes"][-1]["pid"]
    deadline = time.monotonic() + 30
    while fleet_state(base)["chat"]["state"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert fleet_state(base)["chat"]["state"] == "stopped"
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not (modelserve_home / "deployments" / "lab.chat" / "state.json").exists()
    modelserve("down", "lab")


def test_run_supervises_a_fleet_and_a_killed_gateway_comes_back_with_its_members(
    smollm2_dir: Path, in_tmp: Path, modelserve_home: Path, cli_env: dict[str, str], tmp_path: Path
) -> None:
    port = ports.free_port()
    base = f"http://127.0.0.1:{port}"
    path = fleet_file(in_tmp, smollm2_dir, port, "{max_loaded: 2}", chat_extra=", preload: true")
    fake = FakeSystemd(tmp_path / "notify.sock", f"{base}/v1/models")
    runner = subprocess.Popen([*modelserve_cmd(), "run", "-c", str(path)], env={**cli_env, "NOTIFY_SOCKET": str(fake.path)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while fake.first("READY=1") is None and runner.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert fake.first("READY=1") is not None and fake.answered_at_ready, runner.stdout
        assert fleet_state(base)["chat"]["state"] == "ready"  # READY=1 came after the preload
        state_file = modelserve_home / "deployments" / "lab" / "state.json"
        gateway_pid = json.loads(state_file.read_text())["processes"][0]["pid"]
        member_pid = json.loads((modelserve_home / "deployments" / "lab.chat" / "state.json").read_text())["processes"][-1]["pid"]  # fmt: skip

        os.kill(gateway_pid, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            record = json.loads(state_file.read_text())
            if record["restarts"] >= 1 and record["status"] == "ready":
                break
            time.sleep(0.2)
        assert record["restarts"] == 1 and record["processes"][0]["pid"] != gateway_pid
        chat = fleet_state(base)["chat"]
        assert chat["state"] == "ready" and chat["loads"] == 0  # adopted, not started again
        assert psutil.pid_exists(member_pid)
        r = requests.post(f"{base}/v1/chat/completions", json={"model": "chat", **CHAT}, timeout=300)
        assert r.status_code == 200, r.text

        runner.send_signal(signal.SIGTERM)
        assert runner.wait(120) == 0
    finally:
        if runner.poll() is None:
            runner.kill()
        fake.close()
    assert with_home(modelserve_home) == []
    assert not list((modelserve_home / "deployments").glob("*/state.json"))


@pytest.mark.vllm
def test_a_vllm_member_and_a_built_in_member_answer_through_one_gateway(
    modelserve: Any, smollm2_dir: Path, in_tmp: Path, modelserve_home: Path
) -> None:
    modelserve("env", "create", "vllm", "--variant", "cpu", timeout=3600)  # already there when test_vllm_cpu ran
    port = ports.free_port()
    base = f"http://127.0.0.1:{port}"
    path = in_tmp / "fleet.yaml"
    path.write_text(
        f"name: mixed\ngateway: {{port: {port}}}\nagentscope: {{config: null}}\ndeployments:\n"
        f"  - {{name: fast, model: {smollm2_dir}, backend: vllm, device: cpu, max_model_len: 2048, timeout: 900}}\n"
        f"  - {{name: small, model: {smollm2_dir}, backend: flask-transformers, threads: 1}}\n"
    )
    modelserve("up", "-c", str(path))
    answers = {}
    for model in ("fast", "small"):
        r = requests.post(f"{base}/v1/chat/completions", json={"model": model, **CHAT, "max_tokens": 24}, timeout=1200)
        assert r.status_code == 200, r.text
        assert r.json()["model"] == model
        answers[model] = r.json()["choices"][0]["message"]["content"]
    assert "Paris" in answers["fast"], answers
    state = fleet_state(base)
    assert state["fast"]["state"] == state["small"]["state"] == "ready"
    assert json.loads((modelserve_home / "deployments" / "mixed.fast" / "state.json").read_text())["backend"] == "vllm"
    modelserve("down", "mixed")
    deadline = time.monotonic() + 60
    while with_home(modelserve_home) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert with_home(modelserve_home) == []
    vllm_left = [p for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith("VLLM::")
                 and p.status() != psutil.STATUS_ZOMBIE]  # fmt: skip
    assert vllm_left == []


def test_an_ollama_member_gets_its_tag_as_model(cli_env: dict[str, str], tmp_path: Path, modelserve_home: Path) -> None:
    """Ollama names models by tag: the gateway sends the tag upstream (the Ollama stand-in names
    the model it was asked for in its echo) while clients use the member's id."""
    env = {**env_with_standin(cli_env), "OLLAMA_MODELS": str(tmp_path / "ollama-models")}
    port = ports.free_port()
    path = tmp_path / "fleet.yaml"
    path.write_text(f"name: oll\ngateway: {{port: {port}}}\nagentscope: {{config: null}}\ndeployments:\n"
                    "  - {name: tiny, model: Qwen/Qwen2.5-0.5B-Instruct, backend: ollama}\n")  # fmt: skip
    up = subprocess.run([*modelserve_cmd(), "up", "-c", str(path)], env=env, capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stderr
    try:
        r = requests.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={"model": "tiny", **CHAT}, timeout=300)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"].startswith("Stand-in reply from qwen2.5:0.5b"), r.text
    finally:
        subprocess.run([*modelserve_cmd(), "down", "oll"], env=env, capture_output=True, timeout=120)
    assert with_home(modelserve_home) == []
