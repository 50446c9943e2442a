"""What a bench run found, as pydantic models (the ``--json`` envelope is their dump), and the
pure arithmetic from samples to them: tokens/s from usage, p50/p95, per-turn TTFT, ratios."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from launcher.bench.loadgen import Sample
from launcher.bench.workloads import BenchSettings, Workload

REPORT_VERSION = 1  # the --json envelope's "version"; bump it when a field changes meaning


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TurnStats(_Strict):
    turn: int
    requests: int
    errors: int
    ttft_p50_s: float | None
    ttft_max_s: float | None  # the slowest session's first token: all of this turn's prefill is done
    prompt_tokens: int
    cached_tokens: int | None


class Stats(_Strict):
    requests: int  # sent; agent turns after a failed one are not
    errors: int
    error_examples: list[str]  # the distinct messages, three at most
    wall_s: float
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int | None  # None: the server never reported usage.prompt_tokens_details.cached_tokens
    short_replies: int  # fewer tokens than asked: the engine ignores min_tokens, or --no-min-tokens
    estimated_tokens: int  # streamed replies without usage: their tokens are the content chunks counted
    tokens_per_s: float
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    latency_p50_s: float | None
    latency_p95_s: float | None
    turns: list[TurnStats]  # agent only
    first_turn_ttft_p50_s: float | None
    later_turns_ttft_p50_s: float | None


class TargetInfo(_Strict):
    label: str
    openai_url: str
    model: str


class Run(_Strict):
    """One workload on one target, in the order they ran (``--compare`` interleaves them)."""

    round: int
    workload: str
    target: str
    started_s: float  # since the bench started
    stats: Stats


class Result(_Strict):
    """One workload on one target, every round's samples pooled."""

    workload: str
    target: str
    stats: Stats


class Ratio(_Strict):
    """``target`` / ``baseline`` for one workload (a --compare deployment is the baseline)."""

    workload: str
    target: str
    baseline: str
    tokens_per_s: float | None  # above 1: the target is faster
    ttft_p50: float | None  # below 1: the target answers sooner
    later_turns_ttft_p50: float | None
    first_turn_ttft_p50: float | None
    latency_p50: float | None


class BenchReport(_Strict):
    version: Literal[1] = 1  # REPORT_VERSION
    settings: BenchSettings
    targets: list[TargetInfo]
    runs: list[Run]
    results: list[Result]
    ratios: list[Ratio]

    @property
    def errors(self) -> int:
        return sum(r.stats.errors for r in self.results)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest rank (no interpolation between two requests' times); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _cached(samples: Sequence[Sample]) -> int | None:
    reported = [s.cached_tokens for s in samples if s.cached_tokens is not None]
    return sum(reported) if reported else None


def summarise(workload: Workload, samples: Sequence[Sample], wall_s: float) -> Stats:
    ok = [s for s in samples if s.error is None]
    ttfts = [s.ttft for s in ok if s.ttft is not None]
    latencies = [s.latency for s in ok]
    completion = sum(s.completion_tokens for s in ok)
    errors = [s.error for s in samples if s.error is not None]
    turns = _turns(samples) if workload.kind == "agent" else []
    later = [s.ttft for s in ok if s.turn > 1 and s.ttft is not None]
    return Stats(
        requests=len(samples), errors=len(errors), error_examples=list(dict.fromkeys(errors))[:3],
        wall_s=round(wall_s, 4), prompt_tokens=sum(s.prompt_tokens for s in ok), completion_tokens=completion,
        cached_tokens=_cached(ok), short_replies=sum(1 for s in ok if s.completion_tokens < workload.tokens),
        estimated_tokens=sum(1 for s in ok if s.estimated),
        tokens_per_s=round(completion / wall_s, 3) if wall_s > 0 else 0.0,
        ttft_p50_s=_median(ttfts), ttft_p95_s=percentile(ttfts, 0.95),
        latency_p50_s=_median(latencies), latency_p95_s=percentile(latencies, 0.95), turns=turns,
        first_turn_ttft_p50_s=turns[0].ttft_p50_s if turns else None,
        later_turns_ttft_p50_s=_median(later) if workload.kind == "agent" else None,
    )  # fmt: skip


def _turns(samples: Sequence[Sample]) -> list[TurnStats]:
    out = []
    for turn in sorted({s.turn for s in samples}):
        these = [s for s in samples if s.turn == turn]
        ok = [s for s in these if s.error is None]
        ttfts = [s.ttft for s in ok if s.ttft is not None]
        out.append(TurnStats(turn=turn, requests=len(these), errors=len(these) - len(ok), ttft_p50_s=_median(ttfts),
                             ttft_max_s=max(ttfts) if ttfts else None, prompt_tokens=sum(s.prompt_tokens for s in ok),
                             cached_tokens=_cached(ok)))  # fmt: skip
    return out


def _over(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def ratios(results: Sequence[Result], targets: Sequence[str]) -> list[Ratio]:
    """The first target against each other one, workload by workload."""
    by = {(r.workload, r.target): r.stats for r in results}
    out = []
    for workload in dict.fromkeys(r.workload for r in results):
        first = by[(workload, targets[0])]
        for other in targets[1:]:
            base = by[(workload, other)]
            out.append(Ratio(
                workload=workload, target=targets[0], baseline=other,
                tokens_per_s=_over(first.tokens_per_s, base.tokens_per_s), ttft_p50=_over(first.ttft_p50_s, base.ttft_p50_s),
                later_turns_ttft_p50=_over(first.later_turns_ttft_p50_s, base.later_turns_ttft_p50_s),
                first_turn_ttft_p50=_over(first.first_turn_ttft_p50_s, base.first_turn_ttft_p50_s),
                latency_p50=_over(first.latency_p50_s, base.latency_p50_s),
            ))  # fmt: skip
    return out


def pooled(workload: Workload, runs: Sequence[tuple[Sequence[Sample], float]]) -> Stats:
    """Every round of one workload on one target as one: samples together, walls added."""
    return summarise(workload, [s for samples, _ in runs for s in samples], sum(wall for _, wall in runs))


__all__ = ["BenchReport", "BenchSettings", "Ratio", "Result", "Run", "Stats", "TargetInfo", "TurnStats",
           "percentile", "pooled", "ratios", "summarise"]  # fmt: skip
