"""A live single-node Ray cluster on this CPU machine: `modelserve ray head --start` makes it,
`ray check` and `up`'s pre-flight read its nodes and GPUs from it through Ray, `up` refuses a
layout it cannot hold with the numbers, and `modelserve ray stop --start` leaves no Ray process.

Ray (2.60.0, the version configs/envs/vllm-cuda.txt pins) lives in a test venv built by
tests/envs.py; the spec names it as the engine's interpreter. The head declares 4 GPUs
(`--num-gpus`), which Ray takes as given on a machine without any. About 30 s on 2 cores (the
venv build once, ~17 s; start ~4 s, stop ~7 s), so it runs in `make test` (CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from launcher.process.ports import free_port
from tests import envs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gpu"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_python() -> str:
    return str(envs.ensure("ray-2.60.0", log=lambda m: print(m, file=sys.stderr)))


@pytest.fixture()
def ray_tmp(ray_python: str) -> Iterator[Path]:
    """RAY_TMPDIR for this cluster: short (Ray's socket paths must fit 107 bytes) and ours alone,
    so every process of the cluster can be told from any other Ray on the machine."""
    tmp = Path(tempfile.mkdtemp(prefix="msray", dir="/tmp"))
    yield tmp
    if ray_processes(tmp):  # the test failed before its own stop: do not leak a cluster
        subprocess.run([str(Path(ray_python).parent / "ray"), "stop", "--force"], env=dict(os.environ, RAY_TMPDIR=str(tmp)),
                       capture_output=True, timeout=120)  # fmt: skip
    shutil.rmtree(tmp, ignore_errors=True)


def ray_processes(tmp: Path) -> list[psutil.Process]:
    """Processes of the cluster under ``tmp``: they name its session folder on their command line
    or inherited RAY_TMPDIR (the agents retitle themselves `ray::DashboardAgent`)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if str(tmp) in " ".join(proc.info["cmdline"] or ()) or proc.environ().get("RAY_TMPDIR") == str(tmp):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return [p for p in found if p.pid != os.getpid()]


def modelserve(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "launcher.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)  # fmt: skip


def spec(path: Path, *, model: Path, python: str, tmp: Path, gcs: int, nodes: int) -> Path:
    path.write_text(f"model: {model}\nname: big\nport: {free_port()}\ngpus: 4\npython: {python}\n"
                    f"env: {{RAY_TMPDIR: {tmp}}}\nray: {{address: '127.0.0.1:{gcs}', nodes: {nodes}}}\n"
                    "agentscope: {config: null}\n")  # fmt: skip
    return path


def test_live_cluster_is_read_by_the_preflight_and_ray_stop_leaves_nothing(
    tmp_path: Path, ray_python: str, ray_tmp: Path, cli_env: dict[str, str]
) -> None:
    model = tmp_path / "Llama-2-7b-chat-hf"
    model.mkdir()
    shutil.copy(FIXTURES / "llama-2-7b-config.json", model / "config.json")
    gcs = free_port()
    two = spec(tmp_path / "two.yaml", model=model, python=ray_python, tmp=ray_tmp, gcs=gcs, nodes=2)
    t0 = time.monotonic()
    started = modelserve("ray", "head", "-c", str(two), "--start", env=cli_env)
    print(f"ray head --start: {time.monotonic() - t0:.1f} s", file=sys.stderr)
    assert started.returncode == 0, started.stderr
    assert f"ray start --head --port={gcs} --num-gpus=4" in started.stderr and "Ray runtime started" in started.stdout
    assert ray_processes(ray_tmp), "ray start returned but no process of the cluster runs"

    check = modelserve("ray", "check", "-c", str(two), env=cli_env)
    assert check.returncode == 12, check.stdout + check.stderr
    assert "alive  4 GPU(s)" in check.stdout  # one node, as the live cluster reports it
    assert "has 1 node alive (" in check.stderr and ": 4 GPUs; 4 GPUs in all): room for 1 group of 4" in check.stderr

    up = modelserve("up", "-c", str(two), env=cli_env)
    assert up.returncode == 12, up.stdout + up.stderr
    assert "tensor parallel 4 x pipeline parallel 2 needs 2 groups of 4 GPUs" in up.stderr
    assert f"the Ray cluster at 127.0.0.1:{gcs} (ray 2.60.0) has 1 node alive" in up.stderr
    assert "`modelserve ray worker -c FILE --start` on 1 more node with 4 GPUs" in up.stderr
    assert not (Path(cli_env["MODELSERVE_HOME"]) / "deployments" / "big").exists()  # refused before anything

    one = spec(tmp_path / "one.yaml", model=model, python=ray_python, tmp=ray_tmp, gcs=gcs, nodes=1)
    dry = modelserve("up", "-c", str(one), "--dry-run", env=cli_env)
    assert dry.returncode == 0, dry.stderr
    assert ("\n  cluster: tensor parallel 4 x pipeline parallel 1 needs 1 group of 4 GPUs, each group on one node "
            f"(4 GPUs); the Ray cluster at 127.0.0.1:{gcs} (ray 2.60.0) has 1 node alive") in dry.stdout
    assert ": fits; the model needs ~" in dry.stdout and "(Ray reports no GPU memory: not checked)" in dry.stdout
    assert "--tensor-parallel-size 4 --distributed-executor-backend ray" in dry.stdout

    t0 = time.monotonic()
    stopped = modelserve("ray", "stop", "-c", str(two), "--start", env=cli_env)
    print(f"ray stop --start: {time.monotonic() - t0:.1f} s", file=sys.stderr)
    assert stopped.returncode == 0, stopped.stderr
    left = ray_processes(ray_tmp)
    assert not left, f"ray stop left {[(p.pid, p.name()) for p in left]}"
    after = modelserve("ray", "check", "-c", str(two), env=cli_env)
    assert after.returncode == 12 and f"cannot reach the Ray cluster at 127.0.0.1:{gcs}: Connection refused" in after.stderr
