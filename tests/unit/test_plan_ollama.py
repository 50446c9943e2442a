"""The Ollama backend's plans: argv/env/probes as golden files, and what `available()` says."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

import backends
from backends.base import EngineInfo, PlanContext
from backends.ollama.backend import INSTALL_HINT, OllamaBackend
from launcher import devices
from launcher.cli.output import launch_plan_text
from launcher.core.deployment import Deployment
from launcher.core.launch import LaunchPlan
from launcher.models import ResolvedModel
from tests.golden import assert_golden
from tests.ollama_standin.harness import STANDIN_DIR
from tests.unit.plans import gpu, ports

TAG = ResolvedModel("qwen2.5:0.5b", "remote", None, "qwen2.5:0.5b", "Ollama tag qwen2.5:0.5b")
GGUF = ResolvedModel("./tiny.gguf", "local", "/models/tiny.gguf", "tiny", "local GGUF /models/tiny.gguf")
ENGINE = {"binary": "/usr/local/bin/ollama", "version": "0.13.5"}
CPU = devices.DevicePlan("cpu", (), "no GPU found")


def render(dep: Deployment, model: ResolvedModel = TAG, dplan: devices.DevicePlan = CPU,
           engine: dict[str, Any] | None = None, running: str | None = None) -> tuple[LaunchPlan, str]:  # fmt: skip
    """The plan and its golden text (launch_plan_text shows final probes and engine facts too)."""
    ctx = PlanContext("/venv/bin/python", Path("/state/deployments/x/logs"), ports(), 2,
                      ENGINE if engine is None else engine, running=running)  # fmt: skip
    plan = backends.get("ollama").plan(deployment=dep, model=model, devices=dplan, ctx=ctx)
    return plan, launch_plan_text(plan)


def test_tag_on_cpu_runs_ollama_serve_bound_by_ollama_host() -> None:
    plan, text = render(Deployment(model="qwen2.5:0.5b", backend="ollama", port=11434))
    assert_golden("plans/ollama/cpu-tag.txt", text)
    (proc,) = plan.processes
    assert proc.argv == ("/usr/local/bin/ollama", "serve")
    assert proc.env["OLLAMA_HOST"] == "127.0.0.1:11434"
    assert [type(p).__name__ for p in proc.ready] == ["OllamaVersion"]
    assert [type(p).__name__ for p in plan.final_probes] == ["OllamaModelListed", "OpenAIChatAnswers"]
    assert [(c.kind, c.url, c.model_name) for c in plan.clients] == [
        ("ollama_chat", "http://127.0.0.1:11434", "qwen2.5:0.5b"),
        ("openai_chat", "http://127.0.0.1:11434/v1", "qwen2.5:0.5b"),
    ]
    assert not plan.external


def test_gguf_cpu_only_settings_key_and_served_name() -> None:
    dep = Deployment(model="./tiny.gguf", backend="ollama", device="cpu", host="0.0.0.0", port=11500,
                     served_model_name="tiny-chat", api_key="s3cret", options={"ollama": {"ollama_bin": "/opt/ollama/bin/ollama"}},
                     backend_args={"keep_alive": "10m", "OLLAMA_NUM_PARALLEL": 2, "flash_attention": True},
                     env={"OLLAMA_MODELS": "/data/ollama"})  # fmt: skip
    plan, text = render(dep, GGUF, engine={})
    assert_golden("plans/ollama/gguf-cpu-key-settings.txt", text)
    env = plan.processes[0].env
    assert plan.processes[0].argv[0] == "/opt/ollama/bin/ollama"  # ollama_bin when nothing was inspected
    assert (env["OLLAMA_HOST"], env["CUDA_VISIBLE_DEVICES"]) == ("0.0.0.0:11500", "-1")
    assert (env["OLLAMA_KEEP_ALIVE"], env["OLLAMA_NUM_PARALLEL"], env["OLLAMA_FLASH_ATTENTION"]) == ("10m", "2", "1")
    assert plan.served_model_name == "tiny-chat"
    assert any("does not check API keys" in n for n in plan.notes)


def test_two_gpus_are_handed_to_ollama() -> None:
    dplan = devices.DevicePlan("cuda", (gpu(1), gpu(3)), "test")
    plan, text = render(Deployment(model="qwen2.5:0.5b", backend="ollama", host="::1", port=11434), dplan=dplan)
    assert_golden("plans/ollama/gpu2-ipv6.txt", text)
    env = plan.processes[0].env
    assert (env["CUDA_VISIBLE_DEVICES"], env["OLLAMA_HOST"]) == ("1,3", "[::1]:11434")
    assert plan.endpoints["ollama"] == "http://[::1]:11434"


def test_an_ollama_already_running_is_reused_not_started() -> None:
    running = "Ollama 0.13.5 at http://127.0.0.1:11434"
    plan, text = render(Deployment(model="qwen2.5:0.5b", backend="ollama", port=11434), running=running)
    assert_golden("plans/ollama/external.txt", text)
    assert plan.external and plan.processes == ()
    # Nothing of ours answers /api/version first: the final probes check the server too.
    assert [type(p).__name__ for p in plan.final_probes] == ["OllamaVersion", "OllamaModelListed", "OpenAIChatAnswers"]


def inspect(backend: OllamaBackend, dep: Deployment | None = None) -> EngineInfo:
    return backend.inspect(python="/venv/bin/python", deployment=dep, local=False)


def test_available_says_what_is_missing_and_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    avail = inspect(OllamaBackend()).available
    assert not avail.ok
    assert "`ollama` is not on PATH" in avail.reason and INSTALL_HINT in avail.reason
    assert "https://ollama.com/download" in avail.reason and "ollama_bin" in avail.reason

    backend = OllamaBackend()
    missing = Deployment(model="qwen2.5:0.5b", options={"ollama": {"ollama_bin": "/nope/ollama"}}, port=9)
    reason = inspect(backend, missing).available.reason
    assert "ollama_bin '/nope/ollama' is not an executable file" in reason


def test_available_finds_the_binary_on_path_or_from_ollama_bin(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("PATH", f"{STANDIN_DIR}{os.pathsep}/usr/bin:/bin")
    monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")  # `--version` finds no server there
    avail = inspect(OllamaBackend()).available
    assert (avail.ok, avail.version) == (True, "ollama 0.14.0")  # the stand-in's version

    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    exe = tmp_path / "bin" / "my-ollama"
    exe.parent.mkdir()
    exe.symlink_to(STANDIN_DIR / "ollama")
    assert os.stat(exe).st_mode & stat.S_IXUSR
    backend = OllamaBackend()
    dep = Deployment(model="qwen2.5:0.5b", options={"ollama": {"ollama_bin": str(exe)}})
    model = backend.resolve_model(dep, prepare=False, progress=print)
    assert model.served_name == "qwen2.5:0.5b"
    assert inspect(backend, dep).available.ok
    assert not inspect(backend).available.ok  # without the deployment's ollama_bin: not on PATH
    assert inspect(backend, dep).facts == {"binary": str(exe), "version": "0.14.0"}
