"""`make device-check DEVICE=cpu` passes from a copy of exactly what the device tool sends to a lent
GPU machine (tracked files and untracked ones git does not ignore): the prepared GPU check cannot
rot between loans. It builds the carry (Python 3.12 wheels, under 40 MiB), installs the same pins
into a stand-in for the machine's image, and runs every step on the CPU with the tiny model; only
the assertions a GPU must answer are left out, each named (README: GPUs)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
STEPS = ["wheelhouse", "install", "record", "model", "serve", "bench", "down", "placement", "engine"]
# Where the CPU run leaves assertions to the GPU run, and only there.
CUDA_ONLY = {"record", "serve", "down", "placement", "engine"}


def _copy_of_what_travels(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                           check=True, timeout=60).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, files):
        src = ROOT / name
        if src.is_symlink() or not src.is_file():
            continue  # the shared .cache link; a deleted file git still tracks
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name)


def test_device_check_runs_on_the_cpu(tmp_path: Path) -> None:
    tree, out, wheels = tmp_path / "tree", tmp_path / "out", tmp_path / "wheelhouse"
    _copy_of_what_travels(tree)
    proc = subprocess.run(["make", "-C", str(tree), "device-check", "DEVICE=cpu", f"OUT={out}",
                           f"WHEELHOUSE={wheels}", f"VENV={sys.prefix}"],
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    log = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, log
    assert re.search(r"wheelhouse for Python 3\.12 \(manylinux x86_64\): \d+ wheels, [\d.]+ MiB \(limit 40 MiB\)",
                     proc.stdout), log  # fmt: skip

    summary = json.loads((out / "device-check.json").read_text())
    steps = {s["name"]: s for s in summary["steps"]}
    assert summary["result"] == "ok" and list(steps) == STEPS, log
    carry = steps["wheelhouse"]["data"]["carry"]
    assert carry["python"] == "3.12" and carry["mib"] < 40
    assert {"flask", "pydantic", "llguidance", "modelserve"} <= {w.split()[0] for w in carry["wheels"]}
    assert not steps["install"]["data"]["launcher_from"].startswith(str(tree))  # the wheel's, not the checkout's
    checks = [c for s in summary["steps"] for c in s["checks"]]
    assert len(checks) >= 25 and all(c["ok"] for c in checks), [c for c in checks if not c["ok"]]
    bench_landed = (tree / "launcher" / "bench").is_dir()  # `modelserve bench` (issue 19)
    for name, step in steps.items():
        assert step["status"] == ("skipped" if name == "bench" and not bench_landed else "ok"), step
        assert bool(step["not_here"]) == (name in CUDA_ONLY), step
        assert all(what.startswith("CUDA only: ") for what in step["not_here"])
    if bench_landed:
        assert steps["bench"]["data"]["ratios"]["chat_c8_over_c1_tok_s"] is not None

    # What comes back from a lent machine: at most 8 files, 16 MiB each, named plainly.
    back = list(out.rglob("*"))
    assert all(p.is_file() and p.parent == out for p in back), back
    assert len(back) <= 8 and all(p.stat().st_size < 16 * 2**20 for p in back)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", p.name) for p in back)
