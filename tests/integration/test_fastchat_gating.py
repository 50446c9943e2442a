"""FastChat's three processes through the real backend plan, `up` and `down`, with a stand-in
`fastchat` package (tests/programs/fake_fastchat) so failures can be staged: a worker that dies
while loading, a controller that never answers, a worker that dies after ready."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from launcher.core.deployment_spec import LoadedSpec
from launcher.core.errors import ReadinessTimeout, StartupFailed
from launcher.lifecycle import down as stopping
from launcher.lifecycle import specs
from launcher.lifecycle import status as querying
from launcher.lifecycle import up as starting
from launcher.process import ports
from launcher.store import records

FAKE = Path(__file__).resolve().parents[1] / "programs" / "fake_fastchat"
pytestmark = pytest.mark.usefixtures("cleanup_deployments")


@pytest.fixture()
def fake_python(tmp_path: Path) -> str:
    """An 'interpreter' whose `import fastchat` finds the stand-in (and which has fschat metadata)."""
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{FAKE}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


@pytest.fixture()
def chatml_model(tmp_path: Path) -> Path:
    folder = tmp_path / "Some-Chat-Model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "chat_template.jinja").write_text("{% for m in messages %}<|im_start|>{{ m.role }}\n{% endfor %}")
    return folder


def load(tmp_path: Path, python: str, model: Path, mode: str = "", **extra: object) -> LoadedSpec:
    values = {"model": str(model), "name": "fc", "backend": "fastchat", "device": "cpu", "python": python,
              "port": ports.free_port(), "served_model_name": "org/some-chat-model", "timeout": 30,
              "env": {"FAKE_FASTCHAT": mode}, "agentscope": {"config": None}, **extra}  # fmt: skip
    path = tmp_path / "fc.yaml"
    path.write_text(yaml.safe_dump(values))
    return specs.load(path)


def logs(tmp_path: Path) -> Path:
    return tmp_path / "msh" / "deployments" / "fc" / "logs"


def test_three_processes_in_order_then_down(tmp_path: Path, fake_python: str, chatml_model: Path) -> None:
    result = starting.up(load(tmp_path, fake_python, chatml_model), report=lambda _: None)
    rec = result.record
    assert [p.role for p in rec.processes] == ["controller", "worker", "api", "front"]  # the front: Messages, Responses
    assert [p.create_time for p in rec.processes] == sorted(p.create_time for p in rec.processes)
    worker_argv = rec.processes[1].argv
    # The full ID is what the AgentScope entry sends: the worker must serve exactly that name.
    assert worker_argv[worker_argv.index("--model-names") + 1] == "org/some-chat-model"
    assert worker_argv[worker_argv.index("--conv-template") + 1] == "qwen-7b-chat"
    assert "Register done" in (logs(tmp_path) / "worker.log").read_text()
    assert querying.log_path("fc", "worker") == logs(tmp_path) / "worker.log"
    pids = [p.pid for p in rec.processes]
    (down,) = stopping.down(["fc"])
    assert not down.report.killed
    assert not [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]


def test_worker_that_dies_while_loading_fails_up_with_its_log(tmp_path: Path, fake_python: str,
                                                              chatml_model: Path) -> None:  # fmt: skip
    t0 = time.monotonic()
    with pytest.raises(StartupFailed) as err:
        starting.up(load(tmp_path, fake_python, chatml_model, "worker-dies"), report=lambda _: None)
    assert "the worker process exited with code 3" in str(err.value)
    assert err.value.log_tail.splitlines()[-1] == "RuntimeError: CUDA out of memory (fake)"
    assert time.monotonic() - t0 < 15
    assert not (logs(tmp_path) / "api.log").exists()  # never started: the worker gate failed
    assert records.list_all() == []
    assert _fake_processes() == []


def test_controller_that_never_answers_times_out_before_the_worker(tmp_path: Path, fake_python: str,
                                                                   chatml_model: Path) -> None:  # fmt: skip
    loaded = load(tmp_path, fake_python, chatml_model, "controller-mute", timeout=3)
    with pytest.raises(ReadinessTimeout) as err:
        starting.up(loaded, report=lambda _: None)
    assert "not ready after 3 s" in str(err.value) and "/list_models" in str(err.value)
    assert not (logs(tmp_path) / "worker.log").exists()
    assert records.list_all() == []
    assert _fake_processes() == []


def test_worker_death_after_ready_shows_in_status(tmp_path: Path, fake_python: str, chatml_model: Path) -> None:
    result = starting.up(load(tmp_path, fake_python, chatml_model, "worker-dies-later"), report=lambda _: None)
    worker = result.record.processes[1].pid
    deadline = time.monotonic() + 15
    while psutil.pid_exists(worker) and psutil.Process(worker).status() != "zombie" and time.monotonic() < deadline:
        time.sleep(0.1)
    (row,) = querying.status()
    assert (row.state, row.health, row.healthy) == ("failed", "failing: the worker process exited", False)
    stopping.down(["fc"])
    assert _fake_processes() == []


def _fake_processes() -> list[int]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "fastchat.serve" in cmd and proc.pid != os.getpid():
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc.pid)
            except psutil.Error:
                continue
    return found
