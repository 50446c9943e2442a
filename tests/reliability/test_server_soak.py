"""Soak: many requests of mixed lengths at concurrency 16 against one built-in server (some
streamed, some cancelled by their client mid-stream). Nothing may fail, and the server's memory
must settle: RSS grows less than 10% from the 100th to the last request.

CI runs the full 1,000 requests on the tiny model (~1-2 minutes); ``make soak`` runs it with
``MODELSERVE_SOAK_REQUESTS`` raised and on the real SmolLM2 (``MODELSERVE_SOAK_MODEL=smollm2``).
"""

from __future__ import annotations

import json
import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from tests.servers import ServerProcess, StartServer, wait_for

REQUESTS = int(os.environ.get("MODELSERVE_SOAK_REQUESTS", "1000"))
CONCURRENCY = 16
BASELINE_AT = 100  # memory is compared from here: caches, allocator pools and imports are warm by then


@pytest.fixture(scope="module")
def soak_server(start_server: StartServer, tiny_model_dir: Path, request: pytest.FixtureRequest) -> ServerProcess:
    model = tiny_model_dir
    if os.environ.get("MODELSERVE_SOAK_MODEL") == "smollm2":
        model = request.getfixturevalue("smollm2_dir")
    # A queue as deep as the load: the soak is about leaks, not about turning clients away.
    return start_server(model, "--max-batch-size", "8", "--max-queue", str(CONCURRENCY), name="soak")


def one(server: ServerProcess, i: int, rng: random.Random) -> str:
    """One request; its kind: plain, stream or cancelled (a stream hung up after two chunks)."""
    kind = ("plain", "stream", "cancelled")[i % 3]
    body: dict[str, Any] = {
        "model": "soak",
        "messages": [{"role": "user", "content": "tell me about " + " ".join(["cats"] * rng.randint(1, 40))}],
        "max_tokens": rng.choice([1, 4, 16, 48, 96]),
        "temperature": rng.choice([0.0, 0.8]),
    }
    if kind == "plain":
        r = server.post("/v1/chat/completions", body)
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["completion_tokens"] <= body["max_tokens"]
        return kind
    body["stream"] = True
    if kind == "cancelled":  # long enough that the client always leaves before the end
        body.update(max_tokens=1000, min_tokens=1000)
    with requests.post(server.url + "/v1/chat/completions", json=body, stream=True, timeout=120) as r:
        assert r.status_code == 200, r.text
        events = 0
        for line in r.iter_lines():
            if not line.startswith(b"data: "):
                continue
            events += 1
            if kind == "cancelled" and events == 2:
                return kind  # leaving the with block closes the connection mid-stream
            if line != b"data: [DONE]":
                assert "error" not in json.loads(line[len(b"data: ") :]), line
        assert events >= 2  # role chunk, ..., [DONE]
    return kind


@pytest.mark.reliability
@pytest.mark.slow
def test_mixed_load_has_no_errors_and_memory_settles(soak_server: ServerProcess) -> None:
    proc = psutil.Process(soak_server.proc.pid)
    done = 0
    lock = threading.Lock()
    rss: dict[int, int] = {}

    def run(i: int) -> str:
        nonlocal done
        kind = one(soak_server, i, random.Random(i))
        with lock:
            done += 1
            if done in (BASELINE_AT, REQUESTS):
                rss[done] = proc.memory_info().rss
        return kind

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        kinds = list(pool.map(run, range(REQUESTS)))  # re-raises the first failure
    assert len(kinds) == REQUESTS and {"plain", "stream", "cancelled"} <= set(kinds)
    metrics = soak_server.metrics()
    errors = {k: v for k, v in metrics.items() if k.startswith("modelserve_requests_total") and
              ('status="5' in k or 'status="4' in k and 'status="499' not in k)}  # fmt: skip
    assert not any(errors.values()), errors
    wait_for("the last cancelled rows to leave", lambda: soak_server.metrics()["modelserve_kv_cache_tokens"] == 0)
    metrics = soak_server.metrics()
    assert metrics['modelserve_requests_total{route="/v1/chat/completions",status="499"}'] == kinds.count("cancelled")
    assert metrics["modelserve_running_requests"] == 0 and metrics["modelserve_queue_depth"] == 0
    growth = rss[REQUESTS] / rss[BASELINE_AT] - 1
    print(f"soak: {REQUESTS} requests, RSS {rss[BASELINE_AT] >> 20} MiB at #{BASELINE_AT} -> "
          f"{rss[REQUESTS] >> 20} MiB at #{REQUESTS} ({growth:+.1%})")  # fmt: skip
    assert growth < 0.10, f"RSS grew {growth:.1%} from request {BASELINE_AT} to {REQUESTS}"
