"""The wheel carries configs/ and systemd/ and works outside the checkout."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

from launcher.process.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (whl,) = out.glob("modelserve-*.whl")
    return whl


def test_wheel_contains_data_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "launcher/configs/defaults.yaml" in names
    assert "launcher/configs/flask-transformers.yaml" in names
    assert {"launcher/configs/envs/vllm-cpu.txt", "launcher/configs/envs/fastchat.txt"} <= names
    assert "launcher/systemd_units/modelserve@.service" in names
    assert "backends/builtin_server/__main__.py" in names
    assert {"launcher/ui/static/index.html", "launcher/ui/static/app.js", "launcher/ui/static/style.css",
            "launcher/ui/static/login.html", "launcher/ui/static/vendor/uplot/uPlot.iife.min.js",
            "launcher/ui/static/vendor/uplot/LICENSE"} <= names  # fmt: skip
    # The surface translator and the front that runs it in front of an engine (Messages, Responses).
    assert {"surfaces/anthropic.py", "surfaces/responses.py", "launcher/front/__main__.py"} <= names
    assert not any(n.startswith("tests/") for n in names)


def test_installed_wheel_runs_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert pip.returncode == 0, pip.stderr
    exe = str(venv / "bin" / "modelserve")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MODELSERVE_HOME": str(tmp_path / "h")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([exe, *args], capture_output=True, text=True, cwd=work, env=env, timeout=120)

    helped = run("--help")
    assert helped.returncode == 0 and "modelserve up -m smollm2-135m" in helped.stdout
    listed = run("backends")
    assert listed.returncode == 0
    assert "flask-transformers" in listed.stdout and "not installed here" in listed.stdout
    # defaults.yaml must come from the wheel: a dry run needs it to build the spec.
    model = tmp_path / "some-model"
    model.mkdir()
    dry = run("up", "--dry-run", "-m", str(model), "-b", "flask-transformers")
    assert dry.returncode == 0, dry.stderr
    assert "defaults.yaml" in dry.stdout and "site-packages/launcher/configs" in dry.stdout
    # The dashboard serves its page and the vendored chart library from the installed package.
    port = free_port()
    started = run("ui", "-p", str(port))
    assert started.returncode == 0, started.stderr
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            assert 'name="csrf-token"' in page.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/static/vendor/uplot/uPlot.iife.min.js", timeout=10) as js:
            assert js.status == 200 and b"uPlot" in js.read()
    finally:
        assert run("down", "ui").returncode == 0
