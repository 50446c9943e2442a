"""From a server's Prometheus text to the dashboard's figures, by the names its backend declared
(core.telemetry): tokens per second, requests running and queued, the median time to first token
and the share of KV cache and prefix-cache hits, over a sliding window of readings.

prometheus-client parses the text; the quantile is estimated from the histogram's buckets the
way Prometheus's histogram_quantile does (linear within a bucket).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from launcher.core.telemetry import Telemetry

TTFT_WINDOW_S = 60.0  # the median time to first token is over requests of the last minute


@dataclass(frozen=True)
class Reading:
    """One scrape: each wanted family's value (summed over its labels) and each histogram's
    cumulative bucket counts as (upper bound, count), sorted."""

    at: float
    values: dict[str, float]
    buckets: dict[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)


def wanted_names(t: Telemetry) -> set[str]:
    names = (t.generated_tokens, t.running, t.queued, t.kv_used, t.kv_budget, t.kv_fraction, t.prefix_hit_tokens,
             t.prefix_query_tokens, t.prefix_cached, t.ttft)  # fmt: skip
    return {n for n in names if n}


def parse(text: str, at: float, t: Telemetry) -> Reading:
    wanted = wanted_names(t)
    values: dict[str, float] = {}
    buckets: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in wanted:
            continue
        for sample in family.samples:
            if family.type == "histogram":
                if sample.name.endswith("_bucket"):
                    le = float(sample.labels["le"])
                    per = buckets.setdefault(family.name, {})
                    per[le] = per.get(le, 0.0) + sample.value
            elif sample.name in (family.name, family.name + "_total"):  # not _created
                values[family.name] = values.get(family.name, 0.0) + sample.value
    return Reading(at, values, {name: tuple(sorted(per.items())) for name, per in buckets.items()})


def quantile(q: float, buckets: tuple[tuple[float, float], ...]) -> float | None:
    """Prometheus's histogram_quantile over cumulative ``buckets``; None without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower  # above the last finite bound: the best estimate is that bound
            inside = count - below
            return lower + (upper - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = upper, count
    return lower


def _delta_buckets(new: tuple[tuple[float, float], ...], old: tuple[tuple[float, float], ...]) -> tuple[tuple[float, float], ...]:  # fmt: skip
    before = dict(old)
    out = tuple((le, count - before.get(le, 0.0)) for le, count in new)
    return new if any(count < 0 for _, count in out) else out  # a restart reset the counts: take them whole


def figures(history: deque[Reading], t: Telemetry) -> dict[str, float | None]:
    """The figures at the newest reading of ``history`` (oldest first), from its differences to the
    previous one (rates) and to the one a window ago (the median time to first token, hit rates)."""
    now = history[-1]
    prev = history[-2] if len(history) > 1 else None
    # The newest reading at least a window old (else the oldest): differences to it cover the last minute.
    base = next((r for r in reversed(history) if r.at <= now.at - TTFT_WINDOW_S), history[0])
    out: dict[str, float | None] = {
        "tokens_per_s": _rate(now, prev, t.generated_tokens),
        "running": now.values.get(t.running) if t.running else None,
        "queued": now.values.get(t.queued) if t.queued else None,
        "ttft_p50_s": None,
        "kv_use_pct": _share(now, t.kv_used, t.kv_budget) if not t.kv_fraction else _kv_fraction(now, t.kv_fraction),
        "prefix_cache_pct": _share(now, t.prefix_cached, t.kv_budget),
        "prefix_hit_pct": None,
    }
    if t.ttft and t.ttft in now.buckets and base is not now:
        out["ttft_p50_s"] = quantile(0.5, _delta_buckets(now.buckets[t.ttft], base.buckets.get(t.ttft, ())))
    if t.prefix_hit_tokens and t.prefix_query_tokens and base is not now:
        hits = _diff(now, base, t.prefix_hit_tokens)
        asked = _diff(now, base, t.prefix_query_tokens)
        out["prefix_hit_pct"] = round(100.0 * hits / asked, 1) if hits is not None and asked else None
    return out


def _diff(now: Reading, then: Reading, name: str) -> float | None:
    if name not in now.values or name not in then.values:
        return None
    change = now.values[name] - then.values[name]
    return change if change >= 0 else None  # a restart reset the counter


def _rate(now: Reading, prev: Reading | None, name: str | None) -> float | None:
    if not name or prev is None or now.at <= prev.at:
        return None
    change = _diff(now, prev, name)
    return None if change is None else round(change / (now.at - prev.at), 2)


def _kv_fraction(now: Reading, name: str) -> float | None:
    return round(100.0 * now.values[name], 1) if name in now.values else None


def _share(now: Reading, part: str | None, whole: str | None) -> float | None:
    """``part`` as a percentage of ``whole`` (two gauges of one reading)."""
    used = now.values.get(part) if part else None
    budget = now.values.get(whole) if whole else None
    if used is None or not budget:
        return None
    return round(100.0 * used / budget, 1)
