"""The real AgentScope 0.1.6 client (with the real `ollama` Python package) through the entries
`modelserve up -b ollama` writes: `ollama_chat` (Ollama's /api/chat) and `openai_chat` (its /v1).

The server is the Ollama stand-in (no Ollama binary can be installed here), so the answers are
its deterministic echo, not a model's: what this proves is that the written config, the client
libraries and the HTTP shapes fit together, end to end."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from launcher.process import ports
from tests.e2e.conftest import ask_agentscope, modelserve_cmd
from tests.ollama_standin.harness import env_with_standin, standin_servers
from tests.procs import with_marker

pytestmark = [pytest.mark.e2e, pytest.mark.agentscope, pytest.mark.usefixtures("cleanup_deployments")]

QUESTION = "What is the capital of France?"




def test_agentscope_replies_through_the_ollama_and_openai_entries(tmp_path: Path, cli_env: dict[str, str],
                                                                 agentscope_python: str) -> None:  # fmt: skip
    env = env_with_standin(cli_env)
    env["OLLAMA_MODELS"] = str(tmp_path / "ollama-models")

    def modelserve(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*modelserve_cmd(), *args], capture_output=True, text=True, env=env, cwd=tmp_path,
                              timeout=300)  # fmt: skip
        assert proc.returncode == 0, f"modelserve {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    port = ports.free_port()
    config = tmp_path / "model_config.json"
    theirs = {"config_name": "my-gpt", "model_type": "openai_chat", "model_name": "gpt-4o", "api_key": "sk-keep"}
    config.write_text(json.dumps([theirs]))
    spec = tmp_path / "ollama.yaml"
    spec.write_text("model: Qwen/Qwen2.5-0.5B-Instruct\nbackend: ollama\nname: qw\n"
                    "agentscope:\n  temperature: 0\n  max_tokens: 48\n")  # fmt: skip
    up = json.loads(modelserve("up", "-c", str(spec), "-p", str(port), "--agentscope-config", str(config),
                               "--json").stdout)  # fmt: skip
    assert up["config_names"] == ["qw-ollama", "qw-openai"]
    written = json.loads(config.read_text())
    assert written[0] == theirs and written[1]["host"] == f"http://127.0.0.1:{port}"

    replies = ask_agentscope(agentscope_python, config, QUESTION, "qw-ollama", "qw-openai")
    assert [r["model_type"] for r in replies] == ["ollama_chat", "openai_chat"]
    # The stand-in echoes the last user message after naming the model the client asked for:
    # the question arrived intact through each client, and each used the served tag.
    for reply in replies:
        assert reply["text"].startswith("Stand-in reply from qwen2.5:0.5b"), reply
        assert QUESTION in reply["text"], reply

    modelserve("down", "qw", "--forget-config")
    assert with_marker(up["deployment"]["marker"]) == []
    assert standin_servers(port) == []
    assert json.loads(config.read_text()) == [theirs]
