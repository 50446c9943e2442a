"""`modelserve restart NAME`: the deployment stopped and started again from the settings its
record keeps (a new process on the same port, the same name and options), and the refusals for
what something else starts and stops (exit 19, naming who), through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil

from launcher.store import records
from tests.integration.test_cli_state import spec
from tests.procs import with_home

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tests.run_cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=120)  # fmt: skip


def test_restart_starts_the_same_deployment_again(tmp_path: Path, cli_env: dict[str, str], modelserve_home: Path) -> None:
    path = spec(tmp_path)
    first = json.loads(cli("up", "-c", str(path), "--json", env=cli_env).stdout)["deployment"]
    path.unlink()  # the settings come from the record, not from the file
    again = cli("restart", "t", "--json", env=cli_env)
    assert again.returncode == 0, again.stderr
    second = json.loads(again.stdout)["deployment"]
    assert (second["port"], second["backend"], second["spec"]) == (first["port"], "script", first["spec"])
    assert second["spec"]["backend_args"] == {"program": "http_server.py", "args": ["--ready-after", "1"]}
    assert second["processes"][0]["pid"] != first["processes"][0]["pid"]
    assert _gone(first["processes"][0]["pid"], first["processes"][0]["create_time"])
    # Its readiness probe passed before `restart` returned; status sees the one record, running.
    status = json.loads(cli("status", "--json", "--no-probe", env=cli_env).stdout)["deployments"]
    assert [(s["name"], s["state"], s["pid"]) for s in status] == [("t", "running", second["processes"][0]["pid"])]
    assert cli("down", "t", env=cli_env).returncode == 0
    assert with_home(modelserve_home) == []


def _gone(pid: int, create_time: float) -> bool:
    """The old server exited: no such pid, the pid reused, or a zombie its new parent has not reaped
    yet (the `up` that started it has exited; in a container, pid 1 may reap late or never)."""
    try:
        proc = psutil.Process(pid)
        return proc.create_time() != create_time or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _record(name: str, **fields: object) -> None:
    records.save(records.DeploymentRecord(name=name, backend="script", api="openai", model="m", model_path=None,
                                          served_model_name="m", host="127.0.0.1", port=1, base_url="http://127.0.0.1:1",
                                          endpoints={}, marker="x", started_at=time.time(), log_dir="/tmp",
                                          **fields))  # type: ignore[arg-type]  # fmt: skip


def test_what_something_else_runs_is_left_to_it(cli_env: dict[str, str]) -> None:
    _record("lab.chat", fleet="lab")
    _record("sup", mode="foreground", supervisor_pid=4242)
    _record("theirs", external=True)
    _record("old")
    for name, says in [("lab.chat", "lab.chat is a member of fleet lab: its gateway starts and stops it"),
                       ("sup", "sup is supervised by `modelserve run` (pid 4242)"),
                       ("theirs", "theirs reuses a server modelserve did not start"),
                       ("old", "old was started by an older modelserve that did not record its settings")]:  # fmt: skip
        refused = cli("restart", name, env=cli_env)
        assert refused.returncode == 19, refused.stderr
        assert f"error: {says}" in refused.stderr and "fix:" in refused.stderr
    assert cli("restart", "nope", env=cli_env).returncode == 10
