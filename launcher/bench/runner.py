"""`modelserve bench`'s one operation: every workload on every target, interleaved.

Round by round, workload by workload, the targets take turns (the order rotates each round), so a
slow stretch of a shared machine lands on all of them rather than on whichever ran then. Each
target gets its warm-up requests first. Agent workloads start their system prompt with the run's
salt plus the round and workload, the same text for every target: each one starts cold.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from launcher.bench.loadgen import Client, Progress, Sample, agent_sessions, closed_loop, warm_up
from launcher.bench.results import BenchReport, Result, Run, TargetInfo, pooled, ratios, summarise
from launcher.bench.targets import BenchTarget
from launcher.bench.workloads import BenchSettings, Workload


def bench(targets: Sequence[BenchTarget], settings: BenchSettings, progress: Progress | None = None) -> BenchReport:
    """Run ``settings`` against ``targets`` (the first is the one measured, the others what it
    is compared with). ``progress`` hears of every request that ended."""
    if len({t.label for t in targets}) != len(targets):
        raise ValueError("each target once")  # the CLI names them; a repeat is a caller's bug
    return asyncio.run(_bench(targets, settings, progress or (lambda _: None)))


async def _bench(targets: Sequence[BenchTarget], settings: BenchSettings, progress: Progress) -> BenchReport:
    began = time.monotonic()
    for target in targets:
        await warm_up(target, settings.warmup, timeout=settings.request_timeout)
    runs: list[Run] = []
    kept: dict[tuple[str, str], list[tuple[list[Sample], float]]] = {}
    for rnd in range(settings.rounds):
        for index, workload in enumerate(settings.workloads):
            order = [targets[(i + rnd) % len(targets)] for i in range(len(targets))]
            for target in order:
                started = time.monotonic() - began
                samples, wall = await _one(target, workload, settings, agent_salt(settings.salt, rnd, index), progress)
                kept.setdefault((workload.label, target.label), []).append((samples, wall))
                runs.append(Run(round=rnd + 1, workload=workload.label, target=target.label, started_s=round(started, 4),
                                stats=summarise(workload, samples, wall)))  # fmt: skip
    results = [Result(workload=w.label, target=t.label, stats=pooled(w, kept[(w.label, t.label)]))
               for w in settings.workloads for t in targets]  # fmt: skip
    return BenchReport(
        settings=settings, targets=[TargetInfo(label=t.label, openai_url=t.openai_url, model=t.model) for t in targets],
        runs=runs, results=results, ratios=ratios(results, [t.label for t in targets]),
    )  # fmt: skip


def agent_salt(salt: str, round_index: int, workload_index: int) -> str:
    """What starts an agent run's system prompt: the same on every target, new for each run."""
    return f"{salt}-{round_index}-{workload_index}"


async def _one(target: BenchTarget, workload: Workload, settings: BenchSettings, salt: str,
               progress: Progress) -> tuple[list[Sample], float]:  # fmt: skip
    client = Client(target, workload, min_tokens=settings.min_tokens, timeout=settings.request_timeout)
    if workload.kind == "agent":
        samples = await agent_sessions(client, salt, progress)
    else:
        samples = await closed_loop(client, progress)
    return samples, time.monotonic() - client.started
