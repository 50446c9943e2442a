"""`modelserve ui --foreground` (what the dashboard's unit runs), with a test-owned NOTIFY_SOCKET
standing in for systemd: READY=1 only once the page's state answers, `status` lists it as
supervised, a dashboard killed behind the supervisor's back comes back, and SIGTERM stops it
leaving nothing (psutil)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from launcher.process import ports
from tests.procs import FakeSystemd, with_home

ROOT = Path(__file__).resolve().parents[2]


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def record(home: Path) -> dict:  # type: ignore[type-arg]
    try:
        return json.loads((home / "deployments" / "ui" / "state.json").read_text())  # type: ignore[no-any-return]
    except (FileNotFoundError, ValueError):
        return {}


def test_the_dashboard_supervised_in_the_foreground(tmp_path: Path, cli_env: dict[str, str], modelserve_home: Path) -> None:
    port = ports.free_port()
    notify = FakeSystemd(tmp_path / "notify.sock", f"http://127.0.0.1:{port}/api/state")
    env = dict(cli_env, NOTIFY_SOCKET=str(notify.path))
    runner = subprocess.Popen([sys.executable, "-m", "launcher.cli", "ui", "--foreground", "-p", str(port)], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        wait_for("READY=1", lambda: notify.first("READY=1") is not None)
        assert notify.answered_at_ready is True  # the page's state answered when systemd was told
        first = record(modelserve_home)
        assert (first["mode"], first["supervisor_pid"], first["backend"]) == ("foreground", runner.pid, "dashboard")
        status = json.loads(subprocess.run([sys.executable, "-m", "launcher.cli", "status", "--json"], env=cli_env,
                                           capture_output=True, text=True, timeout=60).stdout)["deployments"]  # fmt: skip
        assert [(s["name"], s["state"], s["health"], s["mode"]) for s in status] == [("ui", "running", "ok", "foreground")]

        os.kill(first["processes"][0]["pid"], signal.SIGKILL)  # the dashboard dies: its supervisor brings it back
        wait_for("a new dashboard process", lambda: record(modelserve_home).get("restarts") == 1
                 and record(modelserve_home).get("status") == "ready")  # fmt: skip
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state", timeout=10) as r:
            assert r.status == 200

        runner.send_signal(signal.SIGTERM)
        assert runner.wait(60) == 0, runner.stdout.read() if runner.stdout else ""
        assert notify.first("STOPPING=1") is not None
        assert record(modelserve_home) == {} and with_home(modelserve_home) == []
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait(10)
        notify.close()
