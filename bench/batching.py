"""Does the built-in server's batching scheduler pay off? One run, two servers, one ratio.

Starts the built-in server on the real SmolLM2-135M-Instruct twice, once with
--max-batch-size 1 (requests run one after another, like AgentScope's original script with a
lock) and once with --max-batch-size 8, sends the same concurrent load to each, and prints
throughput and latency for both and their ratio. A benchmark, not a test: it asserts nothing and
its numbers depend on the machine; compare ratios measured in the same run.

    .venv/bin/python bench/batching.py [--requests 16] [--concurrency 8] [--tokens 48] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPTS = [
    "Write a short story about a dragon who learns to cook.",
    "Explain why the sky is blue to a child.",
    "List some tips for staying focused while studying.",
    "Describe a walk through a forest in autumn.",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(model: Path, batch: int, threads: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "backends.flask_server", "--model", str(model), "--served-model-name", "m",
         "--port", str(port), "--threads", str(threads), "--max-batch-size", str(batch)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(base + "/health", timeout=2):
                return proc, base
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server not ready in 180 s")


def one(base: str, prompt: str, tokens: int) -> tuple[float, int]:
    # min_tokens forces every answer to the same length, so both runs do the same work.
    body = {"model": "m", "messages": [{"role": "user", "content": prompt}], "max_tokens": tokens,
            "min_tokens": tokens, "temperature": 0}  # fmt: skip
    req = urllib.request.Request(base + "/v1/chat/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})  # fmt: skip
    t0 = time.monotonic()
    with urllib.request.urlopen(req, timeout=600) as resp:
        usage = json.loads(resp.read())["usage"]
    return time.monotonic() - t0, int(usage["completion_tokens"])


def load(base: str, requests: int, concurrency: int, tokens: int) -> dict[str, float]:
    one(base, "Hi", 4)  # warm-up
    t0 = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda i: one(base, PROMPTS[i % len(PROMPTS)], tokens), range(requests)))
    wall = time.monotonic() - t0
    latencies = [r[0] for r in results]
    return {"wall_s": wall, "tok_per_s": sum(r[1] for r in results) / wall, "req_per_s": requests / wall,
            "p50_latency_s": statistics.median(latencies), "max_latency_s": max(latencies)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", type=Path, help="model folder [the smollm2-135m alias, converted if needed]")
    args = ap.parse_args()
    model = args.model
    if model is None:
        from launcher import models

        model = models.ensure_alias(models.ALIASES["smollm2-135m"])
    results = {}
    for batch in (1, 8):
        proc, base = start(model, batch, args.threads)
        try:
            results[batch] = load(base, args.requests, args.concurrency, args.tokens)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        r = results[batch]
        print(f"max-batch-size {batch}: {r['tok_per_s']:6.1f} tok/s  {r['req_per_s']:.2f} req/s  "
              f"p50 {r['p50_latency_s']:.1f} s  max {r['max_latency_s']:.1f} s  (wall {r['wall_s']:.1f} s)")  # fmt: skip
    ratio = results[8]["tok_per_s"] / results[1]["tok_per_s"]
    print(f"batching speed-up: {ratio:.2f}x tokens/s at concurrency {args.concurrency}, "
          f"{args.requests} requests x {args.tokens} tokens, {args.threads} thread(s)")  # fmt: skip


if __name__ == "__main__":
    main()
