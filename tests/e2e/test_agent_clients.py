"""Real agent clients against the demo server, each driven by what `modelserve config` rendered.

`MODELSERVE_API_KEY=KEY modelserve up -m smollm2-135m` (the README's first form), then per client: `modelserve config NAME --format
F --temperature 0` -> the printed (or --write-n) text, unchanged -> executed by that client
inside its own venv (tests/envs.py, built on first use) -> "What is the capital of France?".
With greedy settings every client below answered "The capital of France is Paris." here; the
tests require "Paris". The key proves each format carries it (the server refuses requests
without it).

Clients, and what building their venvs took here (2 cores, pip's download cache warm):
- AgentScope 0.1.6, `--format agentscope --write` (the `up` entries): the env of test_demo_smollm2.
- AgentScope 1.0.21 (+ mcp<2, greenlet, tqdm, ollama): 77 s.
- AgentScope 2.0.11 (+ ollama): 78 s. A plain `pip install agentscope==2.0.11` fails here with
      ERROR: Could not find a version that satisfies the requirement certifi>=2026.10.19 (from
      agentscope) (from versions: 0.0.1, ..., 2026.7.22, 2026.10.18)
      ERROR: No matching distribution found for certifi>=2026.10.19
  so tests/envs.py (RELAXED) installs it with --no-deps, then its own requirements with certifi
  unpinned (pip then warns "agentscope 2.0.11 requires certifi>=2026.10.19, but you have
  certifi 2026.10.18" and 2.0.11 imports and runs).
- ModelScope-Agent 0.7.2: 338 s (404 s in a first scratch venv; it pulls jupyter, spacy,
  llama-index, langchain and transformers, no torch). The llm_config dict goes to get_chat_model(**dict), as Agent(llm=...)
  does; the AgentFabric entry goes through what apps/agentfabric/user_core.py does with it (the
  app is not in the package).
- `--format openai-env`: the openai SDK (3.54.0, from the AgentScope 1.0.21 venv) configured by
  nothing but the two environment lines.
No client failed to install. The Ollama renderings (native OllamaChatModel for 1.x/2.x,
ollama_chat for 0.1.6) run against the Ollama stand-in, which has no model: those replies are
the stand-in's echo, checked as such.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from launcher.process import ports
from tests.e2e.conftest import ask, ask_agentscope, client_python, modelserve_cmd

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.usefixtures("cleanup_deployments")]

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = ROOT / "tests" / "clients"
QUESTION = "What is the capital of France?"
NAME = "clients-demo"
KEY = "s3cret-key"
GREEDY = ("--temperature", "0", "--max-tokens", "48")



@pytest.fixture(scope="session")
def agentscope2_python() -> str:
    return client_python("agentscope-2.0.11")


@pytest.fixture(scope="session")
def modelscope_agent_python() -> str:
    return client_python("modelscope-agent-0.7.2")


@pytest.fixture()
def demo(cli_env: dict[str, str], in_tmp: Path, tmp_path: Path) -> str:
    """The demo model, serving with an API key from the environment (its entries written to a scratch file)."""
    proc = subprocess.run([*modelserve_cmd(), "up", "-m", "smollm2-135m", "-p", str(ports.free_port()), "--name", NAME,
                           "--agentscope-config", str(tmp_path / "up_model_config.json")],
                          env={**cli_env, "MODELSERVE_API_KEY": KEY}, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return NAME


@pytest.fixture()
def config(cli_env: dict[str, str]):
    """`modelserve config ARGS`; returns stdout (notes go to stderr)."""
    def run(*args: str) -> str:
        cmd = [*modelserve_cmd(), "config"]
        proc = subprocess.run([*cmd, *args], capture_output=True, text=True, env=cli_env, timeout=120)
        assert proc.returncode == 0, f"modelserve config {' '.join(args)} -> {proc.returncode}\n{proc.stderr}"
        return proc.stdout

    return run


def test_agentscope_016_through_config_write(agentscope_python: str, demo: str, config, tmp_path: Path) -> None:
    path = tmp_path / "model_config.json"
    theirs = {"config_name": "mine", "model_type": "openai_chat", "model_name": "other", "api_key": "sk-keep"}
    path.write_text(json.dumps([theirs]))
    config(demo, "--format", "agentscope", "--write", str(path), *GREEDY)
    written = json.loads(path.read_text())
    assert [e["config_name"] for e in written] == ["mine", f"{NAME}-post", f"{NAME}-openai"]
    replies = ask_agentscope(agentscope_python, path, QUESTION, f"{NAME}-post", f"{NAME}-openai")
    assert [r["model_type"] for r in replies] == ["post_api_chat", "openai_chat"]
    for reply in replies:
        assert "Paris" in reply["text"], reply


def test_agentscope_1x_snippet(agentscope1_python: str, demo: str, config, tmp_path: Path) -> None:
    snippet = config(demo, "--format", "agentscope-v1", *GREEDY)
    assert f'api_key="{KEY}"' in snippet
    path = tmp_path / "model_v1.py"
    path.write_text(snippet)
    reply = ask(agentscope1_python, "agentscope_v1.py", str(path), QUESTION)
    assert (reply["class"], reply["model"]) == ("OpenAIChatModel", "smollm2-135m")
    assert "Paris" in reply["text"], reply


def test_agentscope_2x_snippet_written_to_a_new_file(agentscope2_python: str, demo: str, config,
                                                     tmp_path: Path) -> None:  # fmt: skip
    path = tmp_path / "model_v2.py"
    assert config(demo, "--format", "agentscope-v2", "--write", str(path), *GREEDY) == f"wrote {path}\n"
    reply = ask(agentscope2_python, "agentscope_v2.py", str(path), QUESTION)
    assert (reply["class"], reply["model"]) == ("OpenAIChatModel", "smollm2-135m")
    assert "Paris" in reply["text"], reply


@pytest.mark.timeout(1800)  # its venv takes ~7 minutes to build the first time
def test_modelscope_agent_llm_config_and_agentfabric_entry(modelscope_agent_python: str, demo: str, config,
                                                           tmp_path: Path) -> None:  # fmt: skip
    llm_config = tmp_path / "llm_config.json"
    llm_config.write_text(config(demo, "--format", "modelscope-agent"))
    # ModelScope-Agent writes ./logs/info.log (with the API key in it): keep it in the scratch folder.
    reply = ask(modelscope_agent_python, "modelscope_agent_072.py", "llm-config", str(llm_config), QUESTION,
                cwd=tmp_path)  # fmt: skip
    assert KEY in (tmp_path / "logs" / "info.log").read_text()  # what the note on stderr warns about
    assert (reply["class"], reply["model"]) == ("OpenAi", "smollm2-135m")
    assert "Paris" in reply["text"], reply

    fabric = tmp_path / "model_config.json"  # AgentFabric's file, with its cloud entry
    fabric.write_text(json.dumps({"qwen-max": {"type": "dashscope", "model": "qwen-max"}}, indent=4))
    config(demo, "--format", "agentfabric", "--write", str(fabric))
    assert list(json.loads(fabric.read_text())) == ["qwen-max", f"{NAME}-openai"]
    reply = ask(modelscope_agent_python, "modelscope_agent_072.py", "agentfabric", str(fabric), QUESTION,
                f"{NAME}-openai", cwd=tmp_path)  # fmt: skip
    assert "Paris" in reply["text"], reply


def test_openai_env_lines_configure_the_openai_sdk(agentscope1_python: str, demo: str, config) -> None:
    lines = config(demo, "--format", "openai-env").splitlines()
    env = dict(shlex.split(line)[0].split("=", 1) for line in lines)
    assert sorted(env) == ["OPENAI_API_KEY", "OPENAI_BASE_URL"]
    assert env["OPENAI_API_KEY"] == KEY
    reply = ask(agentscope1_python, "openai_env.py", "smollm2-135m", QUESTION, env=env)
    assert reply["base_url"] == env["OPENAI_BASE_URL"] + "/"
    assert "Paris" in reply["text"], reply


def test_ollama_endpoints_through_the_native_clients(agentscope_python: str, agentscope1_python: str,
                                                     agentscope2_python: str, config, tmp_path: Path) -> None:  # fmt: skip
    """The Ollama renderings, against the Ollama stand-in (tests/ollama_standin: Ollama's HTTP API,
    no model; it answers "Stand-in reply from MODEL: <last user message>"), through the record an
    Ollama deployment leaves (its native API and its /v1)."""
    from dataclasses import asdict

    from launcher.core.launch import ClientEndpoint
    from launcher.store import records
    from tests.ollama_standin.harness import post_json, running_standin

    port, tag = ports.free_port(), "qwen2.5:0.5b"
    host = f"http://127.0.0.1:{port}"
    endpoints = [ClientEndpoint("ollama_chat", host, tag), ClientEndpoint("openai_chat", f"{host}/v1", tag)]
    records.save(records.DeploymentRecord(
        name="ollama-demo", backend="ollama", api="ollama", model=tag, model_path=None, served_model_name=tag,
        host="127.0.0.1", port=port, base_url=host, endpoints={}, marker="x", started_at=0, log_dir=str(tmp_path),
        status="ready", external=True, client_endpoints=[asdict(e) for e in endpoints]))  # fmt: skip
    expected = f"Stand-in reply from {tag}"
    with running_standin(port, tmp_path / "models", tmp_path / "ollama.log"):
        post_json(f"{host}/api/pull", {"model": tag, "stream": False})

        path = tmp_path / "model_config.json"
        config("ollama-demo", "--format", "agentscope", "--write", str(path))
        replies = ask_agentscope(agentscope_python, path, QUESTION, "ollama-demo-ollama", "ollama-demo-openai")
        assert [r["model_type"] for r in replies] == ["ollama_chat", "openai_chat"]
        for r in replies:
            assert expected in r["text"], r

        v1 = tmp_path / "model_v1.py"
        v1.write_text(config("ollama-demo", "--format", "agentscope-v1"))
        reply = ask(agentscope1_python, "agentscope_v1.py", str(v1), QUESTION)
        assert reply["class"] == "OllamaChatModel" and expected in reply["text"], reply

        v2 = tmp_path / "model_v2.py"
        config("ollama-demo", "--format", "agentscope-v2", "--write", str(v2))
        reply = ask(agentscope2_python, "agentscope_v2.py", str(v2), QUESTION)
        assert reply["class"] == "OllamaChatModel" and expected in reply["text"], reply
