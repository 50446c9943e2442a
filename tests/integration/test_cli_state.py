"""The CLI against itself and its own state: two `up` of one name at once (one starts, the other
exits 11), a damaged state file (status lists the rest and names it), a state folder that cannot
be written or a full disk (exit 17, nothing started is left, no partial file)."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from launcher.process import ports
from tests.procs import with_home

ROOT = Path(__file__).resolve().parents[2]


def spec(tmp_path: Path, name: str = "t") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"model": str(tmp_path), "name": name, "backend": "script", "port": ports.free_port(),
                                    "backend_args": {"program": "http_server.py", "args": ["--ready-after", "1"]},
                                    "agentscope": {"config": None}}))  # fmt: skip
    return path


def cli(*args: str, env: dict[str, str], **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.run_cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT, **kw)  # type: ignore[call-overload]  # fmt: skip


def test_two_ups_of_one_name_start_it_once(tmp_path: Path, cli_env: dict[str, str], modelserve_home: Path) -> None:
    path = spec(tmp_path)
    first, second = cli("up", "-c", str(path), env=cli_env), cli("up", "-c", str(path), env=cli_env)
    results = sorted([(first.wait(60), first.communicate()), (second.wait(60), second.communicate())],
                     key=lambda r: r[0])  # fmt: skip
    (ok_code, _), (refused_code, (_, refused_err)) = results
    assert (ok_code, refused_code) == (0, 11), results
    assert "already running" in refused_err or "starting or stopping 't' right now" in refused_err
    assert cli("down", "t", env=cli_env).wait(60) == 0
    assert with_home(modelserve_home) == []


def test_a_damaged_state_file_hides_nothing_else(tmp_path: Path, cli_env: dict[str, str], modelserve_home: Path) -> None:
    up = cli("up", "-c", str(spec(tmp_path)), env=cli_env)
    assert up.wait(60) == 0, up.communicate()
    bad = modelserve_home / "deployments" / "broken" / "state.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"name": "broken", "backe')  # half a file, as a crash mid-write by another tool leaves
    status = cli("status", "--no-probe", env=cli_env)
    out, err = status.communicate(timeout=60)
    assert status.returncode == 0
    assert out.splitlines()[1].startswith("t ") and "broken" not in out
    assert f"cannot read {bad}" in err
    assert cli("down", "t", env=cli_env).wait(60) == 0


def test_a_state_folder_that_is_not_one_is_a_clear_error(tmp_path: Path, cli_env: dict[str, str]) -> None:
    home = tmp_path / "not-a-folder"
    home.write_text("")
    up = cli("up", "-c", str(spec(tmp_path)), env={**cli_env, "MODELSERVE_HOME": str(home)})
    _, err = up.communicate(timeout=60)
    assert up.returncode == 17, err
    assert f"cannot write modelserve's state in {home}/deployments: Not a directory" in err
    assert "set MODELSERVE_HOME" in err and "Traceback" not in err


def _small_files() -> None:
    # A full disk, as the writer sees it: writes past 1 KiB fail (EFBIG, SIGXFSZ ignored).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))


def test_a_full_disk_fails_up_cleanly(tmp_path: Path, cli_env: dict[str, str], modelserve_home: Path) -> None:
    up = cli("up", "-c", str(spec(tmp_path)), env=cli_env, preexec_fn=_small_files)
    _, err = up.communicate(timeout=60)
    assert up.returncode == 17, err
    assert "cannot write modelserve's state" in err and "File too large" in err
    folder = modelserve_home / "deployments" / "t"
    assert not (folder / "state.json").exists()
    assert [p.name for p in folder.glob(".*.tmp")] == []  # no half-written temp file either
    assert with_home(modelserve_home) == []  # the server it had started was stopped
