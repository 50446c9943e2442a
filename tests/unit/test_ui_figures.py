"""The dashboard's figures from Prometheus text, by the names a backend declares: tokens per
second, running and queued, the median time to first token over the last minute, KV and
prefix-cache use; and the 15-minute timeline. Text comes from the built-in server's real Metrics
class, and from a registry declaring vLLM's families (names and types of vllm/v1/metrics/loggers.py)."""

from __future__ import annotations

from collections import deque
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from backends.builtin_server.engine.metrics import Metrics
from backends.flask_transformers import TELEMETRY as BUILTIN
from backends.vllm import TELEMETRY as VLLM
from launcher.ui.scrape import Reading, figures, parse, quantile
from launcher.ui.timeline import Timeline


def builtin_metrics(cache: object = None) -> Metrics:
    """The server's real Metrics, its prefix-cache collector reading ``cache`` (the store's own)."""
    m = Metrics()
    m.watch_prefix_cache(SimpleNamespace(cache=cache))  # type: ignore[arg-type]
    return m


def test_the_builtin_servers_declared_names_are_its_metrics() -> None:
    families = {f.name for f in text_string_to_metric_families(builtin_metrics().render())}
    declared = {v for k, v in BUILTIN.to_dict().items() if not k.endswith("_path")}
    assert declared and declared <= families, declared - families


def test_builtin_server_figures_over_two_scrapes() -> None:
    m = builtin_metrics(SimpleNamespace(cached_tokens=256, bytes=1, evictions=0))
    m.watch(running=lambda: 3, queue_depth=lambda: 1, kv_tokens=lambda: 512, kv_allocated=lambda: 768, kv_budget=2048)
    history: deque[Reading] = deque()
    history.append(parse(m.render(), 100.0, BUILTIN))
    m.completion_tokens.inc(50)
    m.prompt_tokens.inc(400)
    m.prefix_hit_tokens.inc(100)
    for seconds in (0.04, 0.06, 0.2, 0.3, 0.7):
        m.ttft.observe(seconds)
    history.append(parse(m.render(), 102.0, BUILTIN))
    got = figures(history, BUILTIN)
    assert got["tokens_per_s"] == 25.0 and (got["running"], got["queued"]) == (3, 1)
    assert (got["kv_use_pct"], got["prefix_cache_pct"], got["prefix_hit_pct"]) == (25.0, 12.5, 25.0)
    # 5 observations: the 3rd (0.2 s) is the median; within the (0.1, 0.25] bucket, interpolated.
    assert got["ttft_p50_s"] == pytest.approx(0.1 + 0.15 * (2.5 - 2) / 1)


def test_the_median_covers_the_last_minute_only() -> None:
    m = builtin_metrics()
    m.ttft.observe(20.0)  # long ago
    history = deque([parse(m.render(), 0.0, BUILTIN)])
    history.append(parse(m.render(), 30.0, BUILTIN))
    for _ in range(4):
        m.ttft.observe(0.02)
    history.append(parse(m.render(), 61.0, BUILTIN))  # from the newest reading a minute old: t=0
    assert figures(history, BUILTIN)["ttft_p50_s"] == pytest.approx(0.01 + 0.015 * 0.5)
    history.append(parse(m.render(), 125.0, BUILTIN))  # from t=61: nothing new since
    assert figures(history, BUILTIN)["ttft_p50_s"] is None


def vllm_text(generated: float, hits: float, queries: float, ttfts: list[float]) -> str:
    r = CollectorRegistry()
    labels = ["model_name", "engine"]
    Counter("vllm:generation_tokens", "", labels, registry=r).labels("m", "0").inc(generated)
    Counter("vllm:prefix_cache_hits", "", labels, registry=r).labels("m", "0").inc(hits)
    Counter("vllm:prefix_cache_queries", "", labels, registry=r).labels("m", "0").inc(queries)
    Gauge("vllm:num_requests_running", "", labels, registry=r).labels("m", "0").set(2)
    Gauge("vllm:num_requests_waiting", "", labels, registry=r).labels("m", "0").set(0)
    Gauge("vllm:kv_cache_usage_perc", "", labels, registry=r).labels("m", "0").set(0.125)
    h = Histogram("vllm:time_to_first_token_seconds", "", labels, buckets=(0.1, 0.5, 1.0), registry=r)
    for s in ttfts:
        h.labels("m", "0").observe(s)
    return generate_latest(r).decode()


def test_vllm_figures_from_its_own_names() -> None:
    history = deque([parse(vllm_text(100, 0, 0, []), 10.0, VLLM), parse(vllm_text(130, 30, 120, [0.3]), 11.0, VLLM)])
    got = figures(history, VLLM)
    assert (got["tokens_per_s"], got["running"], got["queued"], got["kv_use_pct"]) == (30.0, 2, 0, 12.5)
    assert got["prefix_hit_pct"] == 25.0
    assert got["ttft_p50_s"] == pytest.approx(0.1 + 0.4 * 0.5)


def test_a_restarted_server_does_not_chart_a_negative_rate() -> None:
    history = deque([parse(vllm_text(500, 0, 0, []), 1.0, VLLM), parse(vllm_text(20, 0, 0, []), 2.0, VLLM)])
    assert figures(history, VLLM)["tokens_per_s"] is None


def test_quantile_edges() -> None:
    assert quantile(0.5, ()) is None and quantile(0.5, ((1.0, 0.0), (float("inf"), 0.0))) is None
    assert quantile(0.5, ((1.0, 0.0), (float("inf"), 4.0))) == 1.0  # all above the last bound


def test_the_timeline_keeps_fifteen_minutes_as_columns() -> None:
    line = Timeline()
    for second in range(0, 1000, 10):
        line.add(float(second), {"a\ttokens_per_s": float(second)} | ({"b\trunning": 1.0} if second >= 990 else {}))
    cols = line.columns()
    assert cols["t"][0] == 90.0 and cols["t"][-1] == 990.0 and len(cols["t"]) == 91  # type: ignore[index]
    series = cols["series"]
    assert series["a\ttokens_per_s"][:2] == [90.0, 100.0]  # type: ignore[index]
    assert series["b\trunning"][-2:] == [None, 1.0]  # type: ignore[index]
