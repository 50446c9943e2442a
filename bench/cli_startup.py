"""How fast do the everyday commands answer? `modelserve --help` and `modelserve status` (with no
deployment, and with three running) against a bare `python -c pass`, as ratios from one run.

Each command runs as a fresh process, the way a user (or a shell prompt, or a monitoring loop)
runs it; the rounds interleave the commands so machine noise hits them alike, and the medians
are compared. The three deployments are real: `modelserve up` with the test backend, each
serving tests/programs/http_server.py, so `status` checks three pids and asks three /health.
A benchmark, not a test: it prints, and exits 1 only when a ratio misses its goal.

    .venv/bin/python bench/cli_startup.py [--rounds 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GOALS = {"--help": 3.0, "status (none)": 4.0, "status (three)": 4.0}


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr}")
    return seconds


def medians(commands: dict[str, list[str]], env: dict[str, str], rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in commands}
    for cmd in commands.values():  # a warm-up: the first run compiles and caches the bytecode
        timed(cmd, env)
    for _ in range(rounds):
        for name, cmd in commands.items():
            times[name].append(timed(cmd, env))
    return {name: statistics.median(values) for name, values in times.items()}


def start_three(env: dict[str, str], work: Path) -> None:
    for i in range(3):
        subprocess.run([sys.executable, "-m", "tests.run_cli", "up", "-m", str(work), "-b", "script", "--name",
                        f"bench-{i}", "-p", str(18431 + i), "--agentscope-config", str(work / "cfg.json")],
                       env=env, cwd=ROOT, check=True, capture_output=True, timeout=60)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    modelserve = str(BIN / "modelserve")
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, MODELSERVE_HOME=str(Path(tmp) / "home"))
        # As installed: bytecode is cached. (Some shells export this; it makes every run recompile.)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        base = {"python -c pass": [sys.executable, "-c", "pass"]}
        first = medians({**base, "--help": [modelserve, "--help"], "status (none)": [modelserve, "status"]},
                        env, args.rounds)  # fmt: skip
        start_three(env, Path(tmp))
        try:
            second = medians({**base, "status (three)": [modelserve, "status"]}, env, args.rounds)
            shown = subprocess.run([modelserve, "status"], env=env, capture_output=True, text=True).stdout
        finally:
            subprocess.run([modelserve, "down", "--all"], env=env, capture_output=True, timeout=60)
    healthy = sum(" ok " in line for line in shown.splitlines())
    print(f"{args.rounds} rounds each; `status (three)` saw {healthy} healthy deployments")
    missed = 0
    for name, goal in GOALS.items():
        run = first if name in first else second
        ratio = run[name] / run["python -c pass"]
        verdict = "ok" if ratio <= goal else "MISSED"
        missed += ratio > goal
        print(f"{name:<16} {run[name] * 1000:6.1f} ms  vs python -c pass {run['python -c pass'] * 1000:5.1f} ms"
              f"  = {ratio:4.2f}x  (goal <= {goal:.0f}x: {verdict})")  # fmt: skip
    return 1 if missed or healthy != 3 else 0


if __name__ == "__main__":
    sys.exit(main())
