"""`up` and `down` against small real child programs (tests/programs), no model involved."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from launcher.core.deployment_spec import LoadedSpec
from launcher.core.errors import AlreadyRunning, PortInUse, ReadinessTimeout, StartupFailed
from launcher.lifecycle import down as stopping
from launcher.lifecycle import specs
from launcher.lifecycle import status as querying
from launcher.lifecycle import up as starting
from launcher.process import ports
from launcher.store import records
from tests.procs import with_marker

pytestmark = pytest.mark.usefixtures("cleanup_deployments")


@pytest.fixture(autouse=True)
def _script_backend(script_backend: None) -> None:
    """Every test here runs the test programs through the `script` backend."""


def deployment(tmp_path: Path, program: str, *args: str, **extra: object) -> LoadedSpec:
    values = {"model": str(tmp_path), "name": "t", "backend": "script", "port": ports.free_port(),
              "backend_args": {"program": program, "args": list(args)},
              "agentscope": {"config": None}, **extra}  # fmt: skip
    path = tmp_path / "dep.yaml"
    path.write_text(yaml.safe_dump(values))
    return specs.load(path)




def test_child_that_exits_while_starting_fails_up_fast_with_its_log(tmp_path: Path) -> None:
    loaded = deployment(tmp_path, "exit_while_starting.py", "456")
    t0 = time.monotonic()
    with pytest.raises(StartupFailed) as err:
        starting.up(loaded, report=lambda _: None)
    elapsed = time.monotonic() - t0
    # POSIX keeps the low 8 bits of an exit status: sys.exit(456) is seen as 456 & 0xFF = 200.
    assert err.value.returncode == 456 & 0xFF
    assert "exited with code 200" in str(err.value)
    assert err.value.log_tail.splitlines()[-1] == "FATAL: out of memory while loading (exiting with 456)"
    assert elapsed < 5.0, f"took {elapsed:.1f} s to notice a crash"
    assert records.list_all() == []  # no record left behind


def test_sigterm_ignoring_child_is_killed_after_the_bound(tmp_path: Path) -> None:
    loaded = deployment(tmp_path, "http_server.py", "--ignore-sigterm", stop_timeout=1.5)
    result = starting.up(loaded, report=lambda _: None)
    pid = result.record.pid
    assert pid is not None and psutil.pid_exists(pid)
    t0 = time.monotonic()
    (down,) = stopping.down(["t"])
    elapsed = time.monotonic() - t0
    assert down.report.killed == [pid]
    assert 1.5 <= elapsed < 6.0
    assert with_marker(result.record.marker) == []
    assert "ignoring SIGTERM" in (tmp_path / "msh").joinpath("deployments/t/logs/server.log").read_text()


def test_helper_process_left_by_a_killed_server_is_stopped(tmp_path: Path) -> None:
    # vLLM's EngineCore survives a SIGKILL of the API process; only the group catches it.
    result = starting.up(deployment(tmp_path, "http_server.py", "--spawn-child"), report=lambda _: None)
    marker = result.record.marker
    assert len(with_marker(marker)) == 2
    os.kill(result.record.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while len(with_marker(marker)) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    (helper,) = with_marker(marker)
    (down,) = stopping.down(["t"])
    assert helper.pid in down.report.terminated
    assert with_marker(marker) == []


def test_never_ready_times_out_and_cleans_up(tmp_path: Path) -> None:
    loaded = deployment(tmp_path, "http_server.py", "--never-ready", timeout=2)
    with pytest.raises(ReadinessTimeout) as err:
        starting.up(loaded, report=lambda _: None)
    assert "not ready after 2 s" in str(err.value) and "HTTP 503" in str(err.value)
    assert records.list_all() == []
    port = loaded.deployment.port
    assert ports.is_free("127.0.0.1", port)


def test_slow_server_is_waited_for(tmp_path: Path) -> None:
    result = starting.up(deployment(tmp_path, "http_server.py", "--ready-after", "1.5"), report=lambda _: None)
    assert result.ready_seconds >= 1.5


def test_port_held_fails_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        loaded = deployment(tmp_path, "http_server.py", port=port)
        with pytest.raises(PortInUse) as err:
            starting.up(loaded, report=lambda _: None)
    text = str(err.value)
    assert f"port {port} is held by pid {os.getpid()}" in text
    assert "python" in text  # the holder's command line
    assert "pick another port, e.g. -p" in text
    assert err.value.exit_code == 6
    assert records.list_all() == []
    assert not (tmp_path / "msh" / "deployments" / "t" / "logs").exists()  # nothing was started


def test_second_up_with_same_name_is_refused(tmp_path: Path) -> None:
    starting.up(deployment(tmp_path, "http_server.py"), report=lambda _: None)
    with pytest.raises(AlreadyRunning, match="modelserve down t"):
        starting.up(deployment(tmp_path, "http_server.py"), report=lambda _: None)


def test_stale_record_is_replaced(tmp_path: Path) -> None:
    first = starting.up(deployment(tmp_path, "http_server.py"), report=lambda _: None)
    os.kill(first.record.pid, signal.SIGKILL)
    # Poll the state itself: a process being torn down after SIGKILL can already have lost its
    # /proc environ (so a marker scan finds nothing) while it is not yet a zombie.
    deadline = time.monotonic() + 10
    while querying.status(probe=False)[0].state != "exited" and time.monotonic() < deadline:
        time.sleep(0.05)
    (row,) = querying.status()
    assert row.state == "exited"
    assert row.last_exit == "the server process exited (exit code not recorded: started detached)"
    second = starting.up(deployment(tmp_path, "http_server.py"), report=lambda _: None)
    assert second.record.marker != first.record.marker


def run_cli(*args: str, env: dict[str, str], check: bool = False) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "tests.run_cli", *args], capture_output=True, text=True,
                          env=env, timeout=120, cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_cli_up_detaches_then_status_logs_health_down(tmp_path: Path, cli_env: dict[str, str]) -> None:
    loaded = deployment(tmp_path, "http_server.py")
    port = loaded.deployment.port
    up = run_cli("up", "-c", str(tmp_path / "dep.yaml"), env=cli_env, check=True)
    assert "ready: t answered after" in up.stdout
    # `up` has exited; the server it started keeps serving.
    record = records.load("t")
    assert psutil.pid_exists(record.pid)
    status = json.loads(run_cli("status", "--json", env=cli_env, check=True).stdout)
    assert status["version"] == 1
    (row,) = status["deployments"]
    assert (row["name"], row["state"], row["health"], row["pid"]) == ("t", "running", "ok", record.pid)
    assert row["endpoint"] == f"http://127.0.0.1:{port}"
    assert "listening on" in run_cli("logs", "t", "-n", "5", env=cli_env, check=True).stdout
    assert run_cli("health", "t", env=cli_env).returncode == 0
    assert run_cli("health", f"http://127.0.0.1:{port}/health", env=cli_env).returncode == 0
    down = run_cli("down", "t", env=cli_env, check=True)
    assert "t: stopped in" in down.stdout
    assert with_marker(record.marker) == []
    assert run_cli("health", "t", env=cli_env).returncode == 10  # no such deployment any more
    assert run_cli("health", f"http://127.0.0.1:{port}/health", env=cli_env).returncode == 1


def test_cli_exit_codes(tmp_path: Path, cli_env: dict[str, str]) -> None:
    deployment(tmp_path, "exit_while_starting.py", "3")
    failed = run_cli("up", "-c", str(tmp_path / "dep.yaml"), env=cli_env)
    assert failed.returncode == 7
    assert "FATAL: out of memory" in failed.stderr
    assert run_cli("down", "nope", env=cli_env).returncode == 10
    with socket.socket() as busy:  # a missing model is reported before a busy port
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        assert run_cli("up", "-m", "./does-not-exist", "-p", port, env=cli_env).returncode == 4
        assert run_cli("up", "-c", str(tmp_path / "dep.yaml"), "-p", port, env=cli_env).returncode == 6
    assert run_cli("up", "-m", "x/y", "--port", "nope", env=cli_env).returncode == 2  # click usage error
    assert run_cli("down", env=cli_env).returncode == 2


def test_non_loopback_bind_without_key_warns(tmp_path: Path) -> None:
    result = starting.up(deployment(tmp_path, "http_server.py", host="0.0.0.0"), report=lambda _: None)
    assert any("binding 0.0.0.0 without an API key" in w for w in result.warnings)
    keyed = specs.load(tmp_path / "dep.yaml", {"api_key": "k", "name": "t2", "port": ports.free_port()})
    assert not starting.up(keyed, report=lambda _: None).warnings
