"""`up -b vllm` inspects the engine's interpreter once per command (it used to spawn it 3 times,
5 with `-b auto`): an interpreter wrapper counts the inspection runs, a stand-in vLLM
(tests/programs/fake_vllm) makes the start real, and a stand-in nvidia-smi gives `-b auto` a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.process import ports
from tests.e2e.conftest import modelserve_cmd

PROGRAMS = Path(__file__).resolve().parents[1] / "programs"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gpu"
pytestmark = pytest.mark.usefixtures("cleanup_deployments")


@pytest.fixture()
def counting_python(tmp_path: Path) -> tuple[str, Path]:
    """An interpreter that has (stand-in) vLLM and appends a line to a log for every `-c` run,
    which is how the launcher inspects an engine without importing it."""
    log = tmp_path / "inspections.log"
    path = f"{PROGRAMS / 'fake_vllm'}:{PROGRAMS / 'fake_fastchat'}"
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\n[ "$1" = "-c" ] && echo inspect >> "{log}"\n'
                       f'PYTHONPATH="{path}" exec "{sys.executable}" "$@"\n')  # fmt: skip
    wrapper.chmod(0o755)
    return str(wrapper), log


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"num_hidden_layers": 2, "hidden_size": 64,
                                                    "num_attention_heads": 4, "vocab_size": 1000}))  # fmt: skip
    return folder


def modelserve(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*modelserve_cmd(), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)
    assert proc.returncode == 0, f"modelserve {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def inspections(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_up_b_vllm_inspects_the_engine_once(counting_python: tuple[str, Path], model: Path, cli_env: dict[str, str],
                                            tmp_path: Path) -> None:  # fmt: skip
    python, log = counting_python
    port = ports.free_port()
    common = ["-m", str(model), "-b", "vllm", "--device", "cpu", "--python", python, "-p", str(port), "--name", "v"]
    modelserve("up", *common, "--dry-run", env=cli_env, cwd=tmp_path)
    assert inspections(log) == 1
    up = modelserve("up", *common, env=cli_env, cwd=tmp_path)
    assert "ready: v answered" in up.stdout
    assert inspections(log) == 2  # one more for the second command, not three
    modelserve("down", "v", env=cli_env, cwd=tmp_path)


def test_auto_on_a_gpu_inspects_vllm_once_and_picks_it(counting_python: tuple[str, Path], model: Path,
                                                       cli_env: dict[str, str], tmp_path: Path) -> None:  # fmt: skip
    python, log = counting_python
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text(f"#!/bin/sh\ncat {FIXTURES / 'smi-1gpu.csv'}\n")
    smi.chmod(0o755)
    env = dict(cli_env, PATH=f"{smi.parent}:{cli_env['PATH']}")
    port = ports.free_port()
    up = modelserve("up", "-m", str(model), "--python", python, "-p", str(port), "--name", "auto", "--json",
                    env=env, cwd=tmp_path)  # fmt: skip
    result = json.loads(up.stdout)
    assert result["backend_reason"] == "1 GPU(s) and vllm 0.0.0 installed: vllm"
    assert result["deployment"]["device"].startswith("GPU 0")
    assert inspections(log) == 1
    modelserve("down", "auto", env=cli_env, cwd=tmp_path)
