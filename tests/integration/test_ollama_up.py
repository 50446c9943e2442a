"""`modelserve up -b ollama` for real against the Ollama stand-in: spawn, probe, pull (with its
progress), create from GGUF, write the AgentScope entries, reuse a running server, fail cleanly,
stop. The launcher's code path is the one a real Ollama gets; only the binary differs."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from launcher.process import ports
from tests.e2e.conftest import modelserve_cmd
from tests.ollama_standin.harness import (
    STANDIN,
    env_with_standin,
    get_json,
    post_json,
    running_standin,
    standin_servers,
    write_gguf,
)
from tests.procs import with_marker

pytestmark = pytest.mark.usefixtures("cleanup_deployments")
Run = Callable[..., subprocess.CompletedProcess[str]]




@pytest.fixture()
def ollama_models(tmp_path: Path) -> Path:
    return tmp_path / "ollama-models"


@pytest.fixture()
def ms(cli_env: dict[str, str], ollama_models: Path, tmp_path: Path) -> Run:
    """Run the real `modelserve` CLI with the stand-in as `ollama` on PATH (``standin=False``: not)."""
    work = tmp_path / "work"
    work.mkdir()

    def run(*args: str, check: bool = True, standin: bool = True, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:  # fmt: skip
        full = env_with_standin(cli_env) if standin else dict(cli_env, PATH="/usr/bin:/bin")
        full["OLLAMA_MODELS"] = str(ollama_models)
        full.update(env or {})
        proc = subprocess.run([*modelserve_cmd(), *args], capture_output=True, text=True, env=full, cwd=work,
                              timeout=timeout)  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(f"modelserve {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run


def nothing_left(ms: Run, port: int, name: str, home: Path) -> None:
    assert standin_servers(port) == []
    assert ports.is_free("127.0.0.1", port)
    assert json.loads(ms("status", "--json").stdout)["deployments"] == []
    assert not (home / "deployments" / name / "state.json").exists()


def test_up_pulls_with_progress_serves_both_entries_and_down_stops_it(ms: Run, tmp_path: Path,
                                                                      modelserve_home: Path) -> None:  # fmt: skip
    port = ports.free_port()
    config = tmp_path / "model_config.json"
    up = ms("up", "-b", "ollama", "-m", "qwen2.5:0.5b", "-p", str(port), "--name", "qw",
            "--agentscope-config", str(config), "--json")  # fmt: skip
    summary = json.loads(up.stdout)
    record = summary["deployment"]
    assert (record["backend"], record["served_model_name"], record["external"]) == ("ollama", "qwen2.5:0.5b", False)
    assert record["engine"] == {"binary": str(STANDIN), "version": "0.14.0",
                                "front": "python -m launcher.front (count_tokens, responses)"}
    assert record["processes"][0]["argv"] == [str(STANDIN), "serve"]
    assert summary["config_names"] == ["qw-ollama", "qw-openai"]

    # The pull was shown: each status once, the 397.8 MB layer at 0/25/50/75/100 % only.
    progress = up.stderr.splitlines()
    assert f"  pulling qwen2.5:0.5b into Ollama at http://127.0.0.1:{port}" in progress
    model_layer = [line for line in progress if line.endswith("of 397.8 MB")]
    assert [re.search(r"(\d+)% of", line).group(1) for line in model_layer] == ["0", "25", "50", "75", "100"]
    for status in ("pulling manifest", "verifying sha256 digest", "writing manifest", "success"):
        assert progress.count(f"    {status}") == 1, up.stderr

    entries = json.loads(config.read_text())
    assert entries[0] == {"config_name": "qw-ollama", "model_type": "ollama_chat", "model_name": "qwen2.5:0.5b",
                          "options": {"temperature": 0.7, "num_predict": 512}, "keep_alive": "5m",
                          "host": f"http://127.0.0.1:{port}"}  # fmt: skip
    assert (entries[1]["model_type"], entries[1]["client_args"]["base_url"]) == (
        "openai_chat", f"http://127.0.0.1:{port}/v1/")

    base = f"http://127.0.0.1:{port}"
    assert [m["name"] for m in get_json(base + "/api/tags")["models"]] == ["qwen2.5:0.5b"]
    status = json.loads(ms("status", "--json").stdout)["deployments"]
    assert [(s["name"], s["state"], s["health"]) for s in status] == [("qw", "running", "ok")]
    assert ms("health", "qw").returncode == 0
    assert "Listening on 127.0.0.1:" in ms("logs", "qw").stdout

    down = ms("down", "qw")
    assert "qw: stopped" in down.stdout
    assert with_marker(record["marker"]) == []
    nothing_left(ms, port, "qw", modelserve_home)

    # The store outlives the server: the next `up` finds the model and pulls nothing.
    again = ms("up", "-b", "ollama", "-m", "qwen2.5:0.5b", "-p", str(port), "--name", "qw",
               "--agentscope-config", str(config))  # fmt: skip
    assert f"  qwen2.5:0.5b is already in Ollama ({base})" in again.stderr
    assert "pulling manifest" not in again.stderr
    ms("down", "qw")


def test_a_hugging_face_id_maps_to_its_tag_and_served_name_is_a_copy(ms: Run, tmp_path: Path) -> None:
    port = ports.free_port()
    up = json.loads(ms("up", "-b", "ollama", "-m", "HuggingFaceTB/SmolLM2-135M-Instruct", "-p", str(port),
                       "--served-model-name", "smol", "--agentscope-config", str(tmp_path / "c.json"),
                       "--json").stdout)  # fmt: skip
    assert up["deployment"]["name"] == "smollm2-135m-instruct"
    assert up["deployment"]["served_model_name"] == "smol"
    assert "Ollama tag smollm2:135m" in up["model"]
    names = {m["name"] for m in get_json(f"http://127.0.0.1:{port}/api/tags")["models"]}
    assert names == {"smollm2:135m", "smol:latest"}
    reply = post_json(f"http://127.0.0.1:{port}/api/chat", {"model": "smol", "stream": False,
                                                             "messages": [{"role": "user", "content": "Hi"}]})  # fmt: skip
    assert reply["message"]["content"] == "Stand-in reply from smol:latest: Hi"
    assert [e["model_name"] for e in json.loads((tmp_path / "c.json").read_text())] == ["smol", "smol"]
    ms("down", "smollm2-135m-instruct")


def test_an_ollama_already_running_is_reused_and_left_running(ms: Run, tmp_path: Path) -> None:
    port = ports.free_port()
    base = f"http://127.0.0.1:{port}"
    with running_standin(port, tmp_path / "theirs", tmp_path / "theirs.log") as theirs:
        # No `ollama` on PATH: reusing a server needs no binary.
        up = ms("up", "-b", "ollama", "-m", "tinyllama", "-p", str(port), "--agentscope-config",
                str(tmp_path / "c.json"), "--json", standin=False)  # fmt: skip
        record = json.loads(up.stdout)["deployment"]
        assert f"reusing Ollama 0.14.0 at {base} (modelserve will not stop it)" in up.stderr
        assert (record["external"], record["processes"]) == (True, [])
        assert "pulling tinyllama into Ollama" in up.stderr  # the model was made present in their server
        assert "tinyllama:latest" in {m["name"] for m in get_json(base + "/api/tags")["models"]}

        status = json.loads(ms("status", "--json").stdout)["deployments"]
        assert [(s["name"], s["state"], s["health"], s["pid"]) for s in status] == [
            ("tinyllama", "running", "ok", None)]
        down = ms("down", "tinyllama")
        assert "tinyllama: left running (modelserve did not start it)" in down.stdout
        assert theirs.poll() is None
        assert get_json(base + "/api/version") == {"version": "0.14.0"}
        assert json.loads(ms("status", "--json").stdout)["deployments"] == []


def test_a_failed_pull_fails_up_clearly_and_leaves_nothing(ms: Run, tmp_path: Path,
                                                           modelserve_home: Path) -> None:  # fmt: skip
    port = ports.free_port()
    config = tmp_path / "c.json"
    failed = ms("up", "-b", "ollama", "-m", "no-such-model:7b", "-p", str(port), "--agentscope-config",
                str(config), check=False)  # fmt: skip
    assert failed.returncode == 4, failed.stderr
    assert "error: pulling no-such-model:7b failed: pull model manifest: file does not exist" in failed.stderr
    assert "fix: check the name at https://ollama.com/library" in failed.stderr
    assert not config.exists()
    nothing_left(ms, port, "no-such-model-7b", modelserve_home)


def test_the_deadline_bounds_a_slow_pull(ms: Run, tmp_path: Path, modelserve_home: Path) -> None:
    port = ports.free_port()
    started = time.monotonic()
    slow = ms("up", "-b", "ollama", "-m", "qwen2.5:0.5b", "-p", str(port), "--timeout", "3", "--agentscope-config",
              str(tmp_path / "c.json"), check=False, env={"OLLAMA_STANDIN_PULL_DELAY": "0.5"})  # fmt: skip
    elapsed = time.monotonic() - started
    assert slow.returncode == 8, slow.stderr
    assert "pulling qwen2.5:0.5b did not finish before the --timeout deadline" in slow.stderr
    assert "fix: raise --timeout" in slow.stderr
    assert elapsed < 9, f"took {elapsed:.1f} s; a full pull at this pace takes 10+ s"
    nothing_left(ms, port, "qwen2.5-0.5b", modelserve_home)


def test_a_gguf_file_is_uploaded_and_created(ms: Run, tmp_path: Path) -> None:
    port = ports.free_port()
    gguf = write_gguf(tmp_path / "work" / "Tiny-Chat.Q8_0.gguf",
                      {"general.architecture": "qwen2", "general.name": "tiny", "general.file_type": 7},
                      padding=3 * 1024 * 1024)  # fmt: skip
    up = ms("up", "-b", "ollama", "-m", "./Tiny-Chat.Q8_0.gguf", "-p", str(port), "--name", "tiny",
            "--agentscope-config", str(tmp_path / "c.json"), "--json")  # fmt: skip
    record = json.loads(up.stdout)["deployment"]
    assert record["served_model_name"] == "tiny-chat.q8_0" and record["model_path"] == str(gguf)
    lines = up.stderr.splitlines()
    assert "  hashing Tiny-Chat.Q8_0.gguf (3.1 MB)" in lines
    assert [line for line in lines if "uploading" in line][-1] == "  uploading Tiny-Chat.Q8_0.gguf 100% of 3.1 MB"
    assert "    parsing GGUF" in lines and "    success" in lines

    base = f"http://127.0.0.1:{port}"
    details = post_json(base + "/api/show", {"model": "tiny-chat.q8_0"})["details"]
    assert (details["family"], details["quantization_level"]) == ("qwen2", "Q8_0")
    ms("down", "tiny")

    # Again, with the blob already in Ollama's store: created without a second upload.
    again = ms("up", "-b", "ollama", "-m", "./Tiny-Chat.Q8_0.gguf", "-p", str(port), "--name", "tiny",
               "--agentscope-config", str(tmp_path / "c.json"))  # fmt: skip
    assert "  Ollama already has Tiny-Chat.Q8_0.gguf" in again.stderr and "uploading" not in again.stderr
    ms("down", "tiny")


def test_ollama_bin_from_the_yaml_and_a_missing_binary(ms: Run, tmp_path: Path) -> None:
    port = ports.free_port()
    missing = ms("up", "-b", "ollama", "-m", "tinyllama", "-p", str(port), "--agentscope-config",
                 str(tmp_path / "c.json"), check=False, standin=False)  # fmt: skip
    assert missing.returncode == 5, missing.stderr
    assert "backend ollama cannot run here: `ollama` is not on PATH: install Ollama" in missing.stderr
    assert "ollama_bin: /path/to/ollama" in missing.stderr

    spec = tmp_path / "ollama.yaml"
    spec.write_text(f"model: tinyllama\nbackend: ollama\nname: tiny\nollama_bin: {STANDIN}\n"
                    f"agentscope:\n  config: {tmp_path / 'c.json'}\n")  # fmt: skip
    up = json.loads(ms("up", "-c", str(spec), "-p", str(port), "--json", standin=False).stdout)
    assert up["deployment"]["engine"]["binary"] == str(STANDIN)
    ms("down", "tiny", standin=False)
    assert standin_servers(port) == []


def test_a_failed_create_fails_up_with_ollamas_reason(ms: Run, tmp_path: Path, modelserve_home: Path) -> None:
    port = ports.free_port()
    broken = tmp_path / "work" / "broken.gguf"
    broken.write_bytes(b"GGUF" + (99).to_bytes(4, "little") + bytes(64))  # a GGUF version Ollama does not know
    failed = ms("up", "-b", "ollama", "-m", "./broken.gguf", "-p", str(port), "--agentscope-config",
                str(tmp_path / "c.json"), check=False)  # fmt: skip
    assert failed.returncode == 13, failed.stderr
    assert f"error: creating broken from {broken} failed: unsupported GGUF version 99" in failed.stderr
    assert "    parsing GGUF" in failed.stderr  # the stream's statuses were shown up to the error line
    nothing_left(ms, port, "broken.gguf", modelserve_home)


def test_a_second_deployment_shares_the_ollama_a_first_one_started(ms: Run, tmp_path: Path) -> None:
    port = ports.free_port()
    config = str(tmp_path / "c.json")
    first = json.loads(ms("up", "-b", "ollama", "-m", "tinyllama", "-p", str(port), "--name", "a",
                          "--agentscope-config", config, "--json").stdout)  # fmt: skip
    second = ms("up", "-b", "ollama", "-m", "qwen2.5:0.5b", "-p", str(port), "--name", "b",
                "--agentscope-config", config, "--json")  # fmt: skip
    assert "(started by modelserve deployment 'a', whose `modelserve down` stops it)" in second.stderr
    assert json.loads(second.stdout)["deployment"]["external"] is True
    names = {m["name"] for m in get_json(f"http://127.0.0.1:{port}/api/tags")["models"]}
    assert names == {"tinyllama:latest", "qwen2.5:0.5b"}
    assert "b: left running" in ms("down", "b").stdout
    assert len(with_marker(first["deployment"]["marker"])) == 2  # a's `ollama serve` and its front, left running
    ms("down", "a")
    assert standin_servers(port) == []


def test_tools_pass_through_to_ollama_on_both_routes(ms: Run, tmp_path: Path) -> None:
    """Ollama answers tools itself: modelserve starts it, says so, and a client's tools and the
    calls that come back cross both APIs in Ollama's documented shapes (the stand-in's)."""
    port = ports.free_port()
    up = ms("up", "-b", "ollama", "-m", "qwen2.5:0.5b", "-p", str(port), "--name", "tl",
            "--agentscope-config", str(tmp_path / "cfg.json"))  # fmt: skip
    assert "tools:      passed through to Ollama" in up.stdout
    base = f"http://127.0.0.1:{port}"
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]  # fmt: skip
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    native = post_json(f"{base}/api/chat", {"model": "qwen2.5:0.5b", "messages": ask, "tools": tools, "stream": False})
    assert native["message"]["tool_calls"] == [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
    openai = post_json(f"{base}/v1/chat/completions", {"model": "qwen2.5:0.5b", "messages": ask, "tools": tools})
    choice = openai["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert (call["function"]["name"], json.loads(call["function"]["arguments"])) == ("get_weather", {"city": "Paris"})
    answered = post_json(f"{base}/v1/chat/completions", {"model": "qwen2.5:0.5b", "tools": tools, "messages": [
        *ask, choice["message"], {"role": "tool", "tool_call_id": call["id"], "content": "Sunny"}]})  # fmt: skip
    assert answered["choices"][0]["message"]["content"].endswith("the tool said Sunny")
    ms("down", "tl")
