"""The prepared device check: one command on a lent GPU machine, the same steps on the CPU in CI.

    python3 -m bench.device_check [--device cuda|cpu] [--out DIR] [--wheelhouse DIR] [--budget-s S]
    make device-check [DEVICE=cpu]

On the machine (``--device cuda``, the default) it installs the carried wheelhouse
(``make wheelhouse`` built it here) into a scratch folder with ``pip --no-index --no-deps
--target``, beside the image's torch, then runs the steps (inner.py) with the image's Python:
record discovery outputs as fixtures; build a model; `modelserve up` on the GPU, its answers, KV
budget and prefix cache; `modelserve bench`; `down`; the fit check against the free memory,
--gpus and CUDA_VISIBLE_DEVICES; the engine's invariants. Everything lands in ``--out`` ($OUT
there): ``device-check.json`` (every step, check, measurement and time), ``logs.txt`` and the
fixture files, flat (the tool brings back at most 8 files).

With ``--device cpu`` (CI, from a fresh clone) it first builds the carry (Python 3.12 wheels; the
size is checked against the limit), then installs the same pins built for this Python into a
stand-in for the image (image_view.py) and runs the same steps on the CPU with the server tests'
tiny model; the assertions only a GPU can answer are listed as not made here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.device_check import image_view, wheelhouse
from bench.device_check.summary import SUMMARY_NAME, StepFailed, Summary

ROOT = Path(__file__).resolve().parents[2]
# A lease has 15 minutes of device time for a start (1-2 min), this run and one rerun: the check
# keeps within 300 s (the README's run call allows 360). CPU runs in CI share 2 cores.
BUDGET_S = {"cuda": 300.0, "cpu": 900.0}
OURS = ("device-check.json", "logs.txt", "smi-*", "nvml-*", "devices-*")


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.device_check", description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "build" / "device-check"),
                   help="where the results go [$OUT, else build/device-check]")  # fmt: skip
    p.add_argument("--wheelhouse", type=Path, default=ROOT / ".wheelhouse", help="the carried wheels [.wheelhouse]")
    p.add_argument("--budget-s", type=float, help="seconds the whole check may take [cuda 300, cpu 900]")
    p.add_argument("--keep-work", action="store_true", help="leave the scratch folder (models, state, logs)")
    return p.parse_args()


def _wheels(args: argparse.Namespace, summary: Summary, work: Path) -> tuple[Path, str]:
    """The wheels to install and the Python to run with (on the CPU: built here, and the stand-in)."""
    with summary.step("wheelhouse", "the carry: Python 3.12 wheels of what the image lacks, and modelserve's",
                      args.out) as step:  # fmt: skip
        if args.device == "cpu":
            house = wheelhouse.build(args.wheelhouse)
        elif not (args.wheelhouse / wheelhouse.MANIFEST).is_file():
            raise StepFailed(f"no wheelhouse at {args.wheelhouse}: build it with `make wheelhouse` where pip reaches "
                             "PyPI, and name it in the run's carry")  # fmt: skip
        else:
            house = wheelhouse.read(args.wheelhouse)
        print(house.describe(), flush=True)
        step.data["carry"] = {"python": house.python, "mib": round(house.bytes / 2**20, 2),
                              "wheels": [f"{w.name} {w.version}" for w in house.wheels]}  # fmt: skip
        step.check(f"the carry is under {wheelhouse.LIMIT // 2**20} MiB", house.bytes <= wheelhouse.LIMIT,
                   f"{house.bytes / 2**20:.1f} MiB")  # fmt: skip
        if args.device == "cuda":
            here = f"{sys.version_info.major}.{sys.version_info.minor}"
            step.check("built for this Python", house.python == here, f"{house.python} (here {here})", required=True)
            return args.wheelhouse, sys.executable
        local = wheelhouse.build(work / "wheels-local", python=None, like=(args.wheelhouse, house))
        step.data["installed_here"] = (f"the same pins built for Python {local.python} ({local.bytes / 2**20:.1f} MiB): "
                                       "this machine has no Python 3.12")  # fmt: skip
        return work / "wheels-local", str(image_view.build(work, {w.name for w in local.wheels}))
    raise StepFailed("the wheelhouse step failed")  # reached only when the step recorded a failure


def _install(args: argparse.Namespace, summary: Summary, wheels: Path, python: str, site: Path) -> bool:
    """Install and look around; False when nothing can run. An unmet version or a failed import
    fails this step while the steps still run: on a 15-minute loan what they find is worth more."""
    installed = False
    with summary.step("install", "pip --no-index --no-deps --target, then what imports and which needs are unmet",
                      args.out) as step:  # fmt: skip
        proc = subprocess.run([python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                               "--no-cache-dir", "--disable-pip-version-check", "--target", str(site),
                               *map(str, sorted(wheels.glob("*.whl")))],
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        step.check("the wheels install beside the image's packages", proc.returncode == 0,
                   proc.stderr[-1500:] or None, required=True)  # fmt: skip
        found = subprocess.run([python, "-P", "-m", "bench.device_check.preflight", args.device, str(site)],
                               capture_output=True, text=True, timeout=300, cwd=site.parent,
                               env={**os.environ, "PYTHONPATH": f"{site}:{ROOT}"})  # fmt: skip
        step.check("the preflight runs", found.returncode == 0, found.stderr[-1500:] or None, required=True)
        report = json.loads(found.stdout)
        installed = True
        step.data.update(report)
        failed = {k: v for k, v in report["imports"].items() if v != "ok"}
        step.check("everything imports with the image's Python", not failed, failed or None)
        step.check("modelserve comes from the installed wheel", report["launcher_from"] == str(site / "launcher"),
                   report["launcher_from"])  # fmt: skip
        step.check("every requirement of modelserve and of the carried wheels is met", not report["unmet"],
                   report["unmet"] or None)  # fmt: skip
        if args.device == "cuda":
            step.check("torch sees a CUDA device", report["cuda"]["available"], report["cuda"])
    return installed


def main() -> int:
    args = _args()
    args.out.mkdir(parents=True, exist_ok=True)
    for pattern in OURS:  # a rerun into the same folder starts clean
        for old in args.out.glob(pattern):
            old.unlink()
    budget = args.budget_s or BUDGET_S[args.device]
    summary = Summary(device=args.device, budget_s=budget)
    deadline = summary.started_at + budget
    work = Path(tempfile.mkdtemp(prefix="modelserve-device-check-"))
    print(f"device check on {args.device}: results in {args.out}, scratch in {work}, {budget:.0f} s at most", flush=True)
    try:
        wheels, python = _wheels(args, summary, work)
        site = work / "site"
        if _install(args, summary, wheels, python, site):
            cmd = [python, "-P", "-m", "bench.device_check.inner", "--device", args.device, "--out", str(args.out),
                   "--work", str(work), "--site", str(site), "--deadline", str(deadline)]  # fmt: skip
            # The machine reaches no network: nothing may try the hub and wait for an answer.
            env = {**os.environ, "PYTHONPATH": f"{site}:{ROOT}", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1",
                   "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}  # fmt: skip
            if args.device == "cpu":  # a developer's GPU stays out of the CPU run
                env["CUDA_VISIBLE_DEVICES"] = "-1"
            try:
                code = subprocess.run(cmd, cwd=work, env=env, timeout=max(30.0, deadline - time.time() + 20)).returncode
            except subprocess.TimeoutExpired:
                code = -1
            summary = Summary.load(args.out / SUMMARY_NAME)
            if code != 0:
                with summary.step("inner", "the steps' process", args.out) as step:
                    step.check("it ended by itself", False, f"exit {code}")
    except StepFailed:
        pass  # recorded in its step
    finally:
        summary.finish()
        summary.write(args.out)
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\ndevice check on {args.device}: {summary.result} in {summary.wall_s:.0f} s ({args.out / SUMMARY_NAME})")
    for s in summary.steps:
        failed = [c.what for c in s.checks if not c.ok]
        print(f"  {s.name:<10} {s.status:<7} {s.seconds:6.1f} s  {'; '.join(failed) or s.error or ''}".rstrip())
        for what in s.not_here:
            print(f"  {'':<10} not here: {what}")
    return 0 if summary.result == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
