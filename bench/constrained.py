"""What does holding a reply to a grammar cost? Constrained generation (a json_schema reply, a
required tool call) against free generation of the same length, on the built-in server with the
real SmolLM2-135M-Instruct, at one request at a time and at eight concurrent, as tokens/s ratios
from one run. Goal: constrained >= 0.8x free (the grammar costs at most a fifth).

Each constrained run goes first; the free run then asks for exactly as many tokens per request
as the constrained replies had on average (min_tokens = max_tokens), so both do the same work.
A benchmark, not a test: it prints, and exits 1 when a ratio misses the goal.

    .venv/bin/python bench/constrained.py [--requests 16] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.serve import start  # noqa: E402

GOAL = 0.8
CITIES = ["Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Seoul", "Quito", "Rome"]
STORY = {"type": "object", "properties": {"title": {"type": "string"}, "summary": {"type": "string"}},
         "required": ["title", "summary"]}  # fmt: skip
TOOLS = [{"type": "function", "function": {"name": "plan_trip", "description": "Plan a trip", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                                     "interests": {"type": "string"}},
    "required": ["city", "days", "interests"]}}}]  # fmt: skip

WORKLOADS: dict[str, Any] = {
    "json_schema": lambda city: {"messages": [{"role": "user", "content": f"Write a short story set in {city}."}],
                                 "response_format": {"type": "json_schema", "json_schema": {"name": "s",
                                                                                            "schema": STORY}}},
    "required tool": lambda city: {"messages": [{"role": "user", "content": f"Plan three days in {city}."}],
                                   "tools": TOOLS, "tool_choice": "required"},
}  # fmt: skip


def post(base: str, body: dict[str, Any]) -> int:
    req = urllib.request.Request(base + "/v1/chat/completions", json.dumps({"model": "m", **body}).encode(),
                                 {"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=600) as resp:
        return int(json.loads(resp.read())["usage"]["completion_tokens"])


def run(base: str, bodies: list[dict[str, Any]], concurrency: int) -> tuple[float, float]:
    """(tokens/s, mean completion tokens)."""
    t0 = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        tokens = list(pool.map(lambda b: post(base, b), bodies))
    return sum(tokens) / (time.monotonic() - t0), sum(tokens) / len(tokens)


def compare(base: str, name: str, requests: int, concurrency: int) -> float:
    make = WORKLOADS[name]
    constrained = [{**make(CITIES[i % len(CITIES)]), "max_tokens": 96, "temperature": 0} for i in range(requests)]
    held, mean = run(base, constrained, concurrency)
    length = max(1, round(mean))
    free = [{"messages": b["messages"], "max_tokens": length, "min_tokens": length, "temperature": 0}
            for b in constrained]  # fmt: skip
    loose, _ = run(base, free, concurrency)
    ratio = held / loose
    verdict = "ok" if ratio >= GOAL else "MISSED"
    print(f"{name:<14} c={concurrency}: constrained {held:6.1f} tok/s, free {loose:6.1f} tok/s "
          f"({length} tokens each) = {ratio:.2f}x  (goal >= {GOAL}: {verdict})")  # fmt: skip
    return ratio


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", type=Path, help="model folder [the smollm2-135m alias, converted if needed]")
    args = ap.parse_args()
    model = args.model
    if model is None:
        from launcher import models

        model = models.ensure_alias(models.ALIASES["smollm2-135m"])
    proc, base = start(model, 8, args.threads)
    try:
        post(base, {**WORKLOADS["json_schema"]("Paris"), "max_tokens": 4})  # warm-up: the grammar tables
        ratios = [compare(base, name, n, c) for name in WORKLOADS for n, c in ((8, 1), (args.requests, 8))]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    return 0 if min(ratios) >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
