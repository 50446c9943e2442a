"""`up` as a real subprocess against small real servers (the `script` test backend, the Ollama
stand-in): an answer waiting cannot change (HTTP 401/403/404) fails it at once; SIGTERM or SIGHUP
while it waits stops what it started and leaves no record, as Ctrl-C does, for one deployment and
for a fleet; MODELSERVE_* variables of the user's shell reach the server only through the plan."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import yaml

from launcher.process import ports
from tests.e2e.conftest import modelserve_cmd
from tests.ollama_standin.harness import env_with_standin
from tests.procs import with_home, with_marker

ROOT = Path(__file__).resolve().parents[2]


def write_spec(tmp_path: Path, *args: str) -> Path:
    values = {"model": str(tmp_path), "name": "s", "backend": "script", "port": ports.free_port(), "timeout": 600,
              "stop_timeout": 5, "backend_args": {"program": "http_server.py", "args": list(args)},
              "agentscope": {"config": None}}  # fmt: skip
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def up_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tests.run_cli", "up", *args]


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def started(state: Path) -> dict | None:  # type: ignore[type-arg]
    """The record once it lists a started process (a record being written reads as not yet)."""
    try:
        record = json.loads(state.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return record if record.get("processes") else None


def nothing_left(home: Path) -> None:
    wait_for(lambda: not with_home(home), 30, "every process of the test's MODELSERVE_HOME to end")
    assert not list((home / "deployments").glob("*/state.json"))


@pytest.mark.parametrize(("code", "cause"), [
    (401, "error: the server demands an API key (HTTP 401 on GET /health)"),
    (403, "error: the server forbids GET /health (HTTP 403)"),
    (404, "error: the server has no such route or model (HTTP 404 on GET /health)"),
])  # fmt: skip
def test_an_answer_waiting_cannot_change_fails_up_at_once(code: int, cause: str, tmp_path: Path,
                                                          cli_env: dict[str, str], modelserve_home: Path) -> None:  # fmt: skip
    # The spec gives `up` 600 s; the 120 s here would end the test long before that deadline.
    proc = subprocess.run(up_cmd("-c", str(write_spec(tmp_path, "--status", str(code)))), cwd=ROOT, env=cli_env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 18, proc.stderr
    assert cause in proc.stderr
    assert "waiting would not change this answer" in proc.stderr and "\n  fix: " in proc.stderr
    nothing_left(modelserve_home)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_while_up_waits_stops_the_server_and_the_record(signum: signal.Signals, tmp_path: Path,
                                                                      cli_env: dict[str, str],
                                                                      modelserve_home: Path) -> None:  # fmt: skip
    state = modelserve_home / "deployments" / "s" / "state.json"
    proc = subprocess.Popen(up_cmd("-c", str(write_spec(tmp_path, "--never-ready"))), cwd=ROOT, env=cli_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(lambda: started(state), 60, "the server to start")
        record = started(state)
        assert record is not None and record["status"] == "starting"
        assert [p.pid for p in with_marker(record["marker"])] == [record["processes"][0]["pid"]]
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, err
    assert f"stopped by {signum.name}" in err
    assert with_marker(record["marker"]) == []
    assert not state.exists()


def test_sigterm_while_a_fleet_preloads_stops_the_gateway_and_the_member(tmp_path: Path, cli_env: dict[str, str],
                                                                         modelserve_home: Path) -> None:  # fmt: skip
    """The member's pull takes 10+ s here: SIGTERM lands while the gateway's `up` of the member
    waits, which the gateway interrupts with SIGTERM in turn."""
    env = {**env_with_standin(cli_env), "OLLAMA_MODELS": str(tmp_path / "ollama-models"),
           "OLLAMA_STANDIN_PULL_DELAY": "0.5"}  # fmt: skip
    path = tmp_path / "fleet.yaml"
    path.write_text(f"name: oll\ngateway: {{port: {ports.free_port()}}}\nagentscope: {{config: null}}\ndeployments:\n"
                    "  - {name: tiny, model: qwen2.5:0.5b, backend: ollama, preload: true}\n")  # fmt: skip
    member = modelserve_home / "deployments" / "oll.tiny" / "state.json"
    proc = subprocess.Popen([*modelserve_cmd(), "up", "-c", str(path)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(lambda: started(member), 120, "the member's server to start")
        assert started(modelserve_home / "deployments" / "oll" / "state.json")  # the gateway runs too
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err
    nothing_left(modelserve_home)


def test_modelserve_variables_of_the_shell_reach_the_server_only_through_the_plan(
    tmp_path: Path, cli_env: dict[str, str], modelserve_home: Path
) -> None:
    env = {**cli_env, "MODELSERVE_API_KEY": "from-the-shell", "MODELSERVE_SOMETHING": "x"}
    proc = subprocess.run(up_cmd("-c", str(write_spec(tmp_path)), "--json"), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    record = json.loads((modelserve_home / "deployments" / "s" / "state.json").read_text())
    try:
        assert record["api_key"] == "from-the-shell"  # `up` read it: the key the plan gives a server
        server = psutil.Process(record["processes"][0]["pid"]).environ()
        # The script backend's plan sets no MODELSERVE_* variable: none of the shell's arrives.
        assert {k for k in server if k.startswith("MODELSERVE_")} == {"MODELSERVE_HOME", "MODELSERVE_CACHE",
                                                                     "MODELSERVE_DEPLOYMENT_ID"}  # fmt: skip
        assert server["MODELSERVE_HOME"] == str(modelserve_home)
    finally:
        subprocess.run([sys.executable, "-m", "tests.run_cli", "down", "s"], cwd=ROOT, env=cli_env, timeout=60)
    nothing_left(modelserve_home)


def test_a_helper_program_ends_with_the_wait_that_was_interrupted() -> None:
    """A model conversion `up` runs (process.childio) stops with `up`, whatever interrupted it."""
    from launcher.core.errors import Terminated
    from launcher.process.childio import run_streaming

    pids: list[int] = []

    def progress(line: str) -> None:
        pids.append(int(line))
        raise Terminated(signal.SIGTERM)  # what the handler raises wherever `up` happens to be

    script = "import os, time; print(os.getpid(), flush=True); time.sleep(120)"
    with pytest.raises(Terminated):
        run_streaming([sys.executable, "-c", script], timeout=120, show=str.isdigit, progress=progress)
    assert len(pids) == 1 and not psutil.pid_exists(pids[0])  # killed and reaped, not left sleeping
