"""Soak, agent-shaped: 16 sessions share one long system prompt and resend their whole history every
turn, as ReAct loops do, against one built-in server whose KV budget is small enough that the prefix
cache must evict all along. Nothing may fail, later turns must find their prefix, the cache must
never hold more than the budget (read from /metrics while the load runs), and memory must settle:
RSS grows less than 10% from the 100th turn to the last.

CI runs 1,000 turns on the tiny model; ``make soak`` runs them on SmolLM2 (``MODELSERVE_SOAK_MODEL=
smollm2``) with ``MODELSERVE_SOAK_TURNS`` raised.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.servers import ServerProcess, StartServer
from tests.tiny_model import VOCABULARY

TURNS = int(os.environ.get("MODELSERVE_SOAK_TURNS", "1000"))
SESSIONS = 16
BASELINE_AT = 100
BUDGET = 6000  # tokens: 16 rows of a few hundred tokens, and little room beyond for the cache
WORDS = VOCABULARY.split()


def words(seed: int, n: int) -> str:
    return " ".join(WORDS[(seed * 13 + i * 7) % len(WORDS)] for i in range(n))


SYSTEM = "you are a helpful assistant . " + words(1, 150)  # instructions and tool descriptions, shared


@pytest.fixture(scope="module")
def agent_server(start_server: StartServer, tiny_model_dir: Path, request: pytest.FixtureRequest) -> ServerProcess:
    model = tiny_model_dir
    if os.environ.get("MODELSERVE_SOAK_MODEL") == "smollm2":
        model = request.getfixturevalue("smollm2_dir")
    return start_server(model, "--max-batch-size", "8", "--max-queue", str(SESSIONS), "--kv-budget-tokens",
                        str(BUDGET), name="agents")  # fmt: skip


class Watch:
    """Reads /metrics while the load runs: the cache and the allocation must stay within the budget."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.highest: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(0.2):
            metrics = self.server.metrics()
            for key in ("modelserve_prefix_cache_tokens", "modelserve_kv_cache_allocated_tokens"):
                self.highest[key] = max(self.highest.get(key, 0.0), metrics[key])


@pytest.mark.reliability
@pytest.mark.slow
def test_agent_sessions_resending_their_history_run_clean(agent_server: ServerProcess) -> None:
    proc = psutil.Process(agent_server.proc.pid)
    lock = threading.Lock()
    turns = 0
    rss: dict[int, int] = {}
    cached: list[int] = []

    def session(s: int) -> None:
        nonlocal turns
        history: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}]
        k = 0
        while True:
            with lock:
                if turns >= TURNS:
                    return
                turns += 1
                n = turns
            if len(history) > 13:  # the task is done: a new one starts from the system prompt
                history = history[:1]
            history.append({"role": "user", "content": words(s * 100 + k, 5 + k % 7)})
            k += 1
            r = agent_server.post("/v1/chat/completions", {"model": "agents", "messages": history, "max_tokens": 8,
                                                           "min_tokens": 8, "temperature": 0})  # fmt: skip
            assert r.status_code == 200, r.text
            body = r.json()
            history.append({"role": "assistant", "content": body["choices"][0]["message"]["content"]})
            with lock:
                cached.append(body["usage"]["prompt_tokens_details"]["cached_tokens"])
                if n in (BASELINE_AT, TURNS):
                    rss[n] = proc.memory_info().rss

    watch = Watch(agent_server)
    watch.thread.start()
    with ThreadPoolExecutor(SESSIONS) as pool:
        list(pool.map(session, range(SESSIONS)))  # re-raises the first failure
    watch.stop.set()
    watch.thread.join(5)
    metrics = agent_server.metrics()
    errors = {k: v for k, v in metrics.items() if k.startswith("modelserve_requests_total") and 'status="200' not in k}
    assert not any(errors.values()), errors
    assert watch.highest["modelserve_kv_cache_allocated_tokens"] <= BUDGET
    assert watch.highest["modelserve_prefix_cache_tokens"] <= BUDGET
    assert metrics["modelserve_prefix_cache_evictions_total"] > 0  # the budget was tight enough to matter
    hit_share = sum(1 for c in cached if c > 0) / len(cached)
    growth = rss[TURNS] / rss[BASELINE_AT] - 1
    print(f"agent soak: {TURNS} turns, {SESSIONS} sessions, {hit_share:.0%} found a cached prefix, "
          f"{metrics['modelserve_prefix_cache_evictions_total']:.0f} blocks evicted; cache at most "
          f"{watch.highest['modelserve_prefix_cache_tokens']:.0f} of {BUDGET} tokens; RSS {rss[BASELINE_AT] >> 20} "
          f"MiB at turn {BASELINE_AT} -> {rss[TURNS] >> 20} MiB at turn {TURNS} ({growth:+.1%})")  # fmt: skip
    assert hit_share > 0.9
    assert growth < 0.10, f"RSS grew {growth:.1%} from turn {BASELINE_AT} to {TURNS}"
