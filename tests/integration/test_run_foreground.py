"""`modelserve run` against small real child programs, with a test-owned NOTIFY_SOCKET standing
in for systemd: READY=1 only after the endpoint answers, STOPPING=1 on SIGTERM, restarts with
backoff after a crash, giving up with exit 16, a second Ctrl-C forcing the stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from launcher.process import ports
from tests.procs import FakeSystemd, with_marker

ROOT = Path(__file__).resolve().parents[2]


def write_spec(tmp_path: Path, *args: str, **extra: object) -> tuple[Path, int]:
    port = ports.free_port()
    values = {"model": str(tmp_path), "name": "fg", "backend": "script", "port": port, "stop_timeout": 3,
              "backend_args": {"program": "http_server.py", "args": list(args)},
              "agentscope": {"config": None}, **extra}  # fmt: skip
    path = tmp_path / "fg.yaml"
    path.write_text(yaml.safe_dump(values))
    return path, port


@pytest.fixture()
def fake_systemd(tmp_path: Path) -> Iterator[callable]:
    made: list[FakeSystemd] = []

    def make(port: int) -> FakeSystemd:
        fs = FakeSystemd(tmp_path / "notify.sock", f"http://127.0.0.1:{port}/health")
        made.append(fs)
        return fs

    yield make
    for fs in made:
        fs.close()


def start_run(spec: Path, cli_env: dict[str, str], notify: Path | None, watchdog_usec: int | None = None
              ) -> subprocess.Popen[str]:  # fmt: skip
    env = dict(cli_env)
    if notify is not None:
        env["NOTIFY_SOCKET"] = str(notify)
    if watchdog_usec:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    return subprocess.Popen([sys.executable, "-m", "tests.run_cli", "run", "-c", str(spec)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip



def processes_of(marker: str) -> list[int]:
    return [p.pid for p in with_marker(marker)]



def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def state_of(home: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((home / "deployments" / "fg" / "state.json").read_text())


def test_ready_only_after_the_endpoint_answers_and_stopping_on_sigterm(
    tmp_path: Path, cli_env: dict[str, str], modelserve_home: Path, fake_systemd
) -> None:
    spec, port = write_spec(tmp_path, "--ready-after", "1.5")
    systemd = fake_systemd(port)
    t0 = time.monotonic()
    proc = start_run(spec, cli_env, systemd.path, watchdog_usec=400_000)
    try:
        wait_for(lambda: systemd.first("READY=1") is not None, 60, "READY=1")
        ready_at = systemd.first("READY=1")
        assert ready_at is not None and ready_at - t0 >= 1.5  # not while /health still said 503
        assert systemd.answered_at_ready is True  # the endpoint answered the moment READY arrived
        assert any(text == "starting" for _, text in systemd.statuses() if _ < ready_at)
        wait_for(lambda: systemd.first("WATCHDOG=1") is not None, 10, "a watchdog ping")
        assert systemd.first("WATCHDOG=1") > ready_at  # type: ignore[operator]
        marker = state_of(modelserve_home)["marker"]
        assert state_of(modelserve_home)["mode"] == "foreground"
        assert processes_of(marker)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert systemd.first("STOPPING=1") is not None
    assert processes_of(marker) == []
    assert not (modelserve_home / "deployments" / "fg" / "state.json").exists()


def test_crash_after_ready_restarts_with_backoff_then_gives_up(
    tmp_path: Path, cli_env: dict[str, str], modelserve_home: Path, fake_systemd
) -> None:
    spec, port = write_spec(tmp_path, "--exit-after", "0.5", restart_limit=2, restart_window=120)
    systemd = fake_systemd(port)
    proc = start_run(spec, cli_env, systemd.path)
    seen_restart_in_status = False
    try:
        deadline = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                st = state_of(modelserve_home)
                if st["restarts"] >= 1 and st["last_exit"] == "the server process exited with code 3":
                    seen_restart_in_status = True
            except (FileNotFoundError, ValueError):
                pass
            time.sleep(0.05)
        assert proc.wait(5) == 16, proc.stdout.read() if proc.stdout else ""
    finally:
        if proc.poll() is None:
            proc.kill()
    out = proc.stdout.read() if proc.stdout else ""
    assert "giving up" in out
    assert seen_restart_in_status
    statuses = systemd.statuses()
    restarting = [(t, s) for t, s in statuses if "restarting in" in s]
    assert [s.split("restarting in ")[1].split(" s")[0] for _, s in restarting] == ["1", "2"]  # doubling backoff
    served = [t for t, s in statuses if s.startswith("serving") and "restarted" in s]
    assert len(served) == 2
    assert served[0] - restarting[0][0] >= 1.0 and served[1] - restarting[1][0] >= 2.0
    stopping = [m for _, m in systemd.messages if "STOPPING=1" in m]
    assert stopping and "giving up" in stopping[-1]
    assert not (modelserve_home / "deployments" / "fg" / "state.json").exists()


def test_status_shows_the_restart_and_why_the_process_ended(
    tmp_path: Path, cli_env: dict[str, str], modelserve_home: Path
) -> None:
    from launcher.lifecycle import status

    spec, _ = write_spec(tmp_path, "--ready-after", "1")  # each start takes a second: "restarting" lasts
    proc = start_run(spec, cli_env, None)
    try:
        wait_for(lambda: (modelserve_home / "deployments/fg/state.json").exists()
                 and state_of(modelserve_home)["status"] == "ready", 60, "ready")  # fmt: skip
        marker = state_of(modelserve_home)["marker"]
        os.kill(state_of(modelserve_home)["processes"][0]["pid"], signal.SIGKILL)
        seen: list[tuple[str, str]] = []  # (what the runner wrote, what status made of it)

        def back() -> bool:
            written = state_of(modelserve_home)["status"]
            (row,) = status.status(probe=False)
            seen.append((written, row.state))
            return row.restarts == 1 and row.state == "running"

        wait_for(back, 60, "the restart")
        # Until the runner notices (within one 0.5 s poll) its record says ready over a dead
        # process: "exited" is right then. Once it has noticed, through the stop, the backoff and
        # the new start, it is "restarting" and never "exited".
        assert ("restarting", "restarting") in seen, seen
        assert ("restarting", "exited") not in seen, seen
        text = subprocess.run([sys.executable, "-m", "tests.run_cli", "status"], cwd=ROOT, env=cli_env,
                              capture_output=True, text=True, check=True).stdout.splitlines()  # fmt: skip
        cells = dict(zip(text[0].split(), text[1].split(), strict=True))
        assert (cells["STATE"], cells["RESTARTS"], cells["HEALTH"]) == ("running", "1", "ok")
        assert text[2] == "fg: last exit: the server process was killed by SIGKILL"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert processes_of(marker) == []


def test_second_ctrl_c_forces_the_stop(tmp_path: Path, cli_env: dict[str, str], modelserve_home: Path) -> None:
    spec, _ = write_spec(tmp_path, "--ignore-sigterm", stop_timeout=60)
    proc = start_run(spec, cli_env, None)
    try:
        wait_for(lambda: (modelserve_home / "deployments/fg/state.json").exists()
                 and state_of(modelserve_home)["status"] == "ready", 60, "ready")  # fmt: skip
        marker = state_of(modelserve_home)["marker"]
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)  # let the graceful stop begin: the child ignores SIGTERM for 60 s
        assert proc.poll() is None
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
        assert time.monotonic() - t0 < 5
    finally:
        if proc.poll() is None:
            proc.kill()
    assert processes_of(marker) == []


def test_down_stops_a_foreground_deployment_through_its_runner(
    tmp_path: Path, cli_env: dict[str, str], modelserve_home: Path
) -> None:
    spec, _ = write_spec(tmp_path)
    proc = start_run(spec, cli_env, None)
    try:
        wait_for(lambda: (modelserve_home / "deployments/fg/state.json").exists()
                 and state_of(modelserve_home)["status"] == "ready", 60, "ready")  # fmt: skip
        marker = state_of(modelserve_home)["marker"]
        status = subprocess.run([sys.executable, "-m", "tests.run_cli", "status", "--json"], cwd=ROOT, env=cli_env,
                                capture_output=True, text=True, check=True)  # fmt: skip
        (row,) = json.loads(status.stdout)["deployments"]
        assert (row["mode"], row["restarts"], row["health"]) == ("foreground", 0, "ok")
        down = subprocess.run([sys.executable, "-m", "tests.run_cli", "down", "fg"], cwd=ROOT, env=cli_env,
                              capture_output=True, text=True)  # fmt: skip
        assert down.returncode == 0, down.stderr
        assert proc.wait(15) == 0  # the runner stopped cleanly instead of restarting its child
    finally:
        if proc.poll() is None:
            proc.kill()
    assert processes_of(marker) == []
    _ = os
