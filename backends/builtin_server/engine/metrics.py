"""What operators look at, in Prometheus's text format (prometheus-client, one registry per
server): requests by route and status, tokens, running rows, the queue, time to first token,
the gap between tokens, KV-cache use, the prefix cache, and requests turned away."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from backends.builtin_server.engine.kv_store import KvStore

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
STEP_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)
ROWS_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    """Thread-safe (prometheus-client's own locks): HTTP threads count requests, the scheduler
    thread everything about decoding. Gauges read the engine at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("modelserve_requests", "HTTP requests by route and status.", ["route", "status"],
                                registry=r)  # fmt: skip
        self.prompt_tokens = Counter("modelserve_prompt_tokens", "Prompt tokens of admitted requests.", registry=r)
        self.completion_tokens = Counter("modelserve_completion_tokens", "Tokens generated (eos excluded).",
                                         registry=r)  # fmt: skip
        self.ttft = Histogram("modelserve_time_to_first_token_seconds", "From arrival to the first token.",
                              buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.itl = Histogram("modelserve_inter_token_latency_seconds", "Between two tokens of one reply.",
                             buckets=STEP_BUCKETS, registry=r)  # fmt: skip
        self.step_rows = Histogram("modelserve_step_rows", "Rows decoded together in one step.",
                                   buckets=ROWS_BUCKETS, registry=r)  # fmt: skip
        self.rejected = Counter("modelserve_rejected_requests", "Requests answered 503: the queue was full.",
                                registry=r)  # fmt: skip
        self.generate_errors = Counter("modelserve_generate_errors", "Decoding steps that raised.", registry=r)
        self.running = Gauge("modelserve_running_requests", "Rows decoding now.", registry=r)
        self.queue_depth = Gauge("modelserve_queue_depth", "Requests waiting to be admitted.", registry=r)
        self.kv_tokens = Gauge("modelserve_kv_cache_tokens", "KV-cache tokens held by the running rows and prompts.",
                               registry=r)  # fmt: skip
        self.kv_allocated = Gauge("modelserve_kv_cache_allocated_tokens",
                                  "KV-cache tokens allocated: rows, room to grow and the prefix cache (<= the budget).",
                                  registry=r)  # fmt: skip
        self.kv_budget = Gauge("modelserve_kv_cache_budget_tokens", "The KV-cache budget (--kv-budget-tokens).",
                               registry=r)  # fmt: skip
        self.prefix_hits = Counter("modelserve_prefix_cache_hits", "Requests whose prompt began with a cached prefix.",
                                   registry=r)  # fmt: skip
        self.prefix_hit_tokens = Counter("modelserve_prefix_cache_hit_tokens",
                                         "Prompt tokens whose KV came from the prefix cache.", registry=r)  # fmt: skip

    def watch(self, *, running: Callable[[], int], queue_depth: Callable[[], int], kv_tokens: Callable[[], int],
              kv_allocated: Callable[[], int], kv_budget: int) -> None:  # fmt: skip
        self.running.set_function(running)
        self.queue_depth.set_function(queue_depth)
        self.kv_tokens.set_function(kv_tokens)
        self.kv_allocated.set_function(kv_allocated)
        self.kv_budget.set(kv_budget)

    def watch_prefix_cache(self, store: KvStore) -> None:
        self.registry.register(_PrefixCacheCollector(store))

    def count_request(self, route: str, status: int) -> None:
        self.requests.labels(route=route, status=str(status)).inc()

    def render(self) -> str:
        return generate_latest(self.registry).decode()


class _PrefixCacheCollector(Collector):
    """The prefix cache's size and evictions, read at scrape time (the scheduler thread owns it)."""

    def __init__(self, store: KvStore) -> None:
        self._store = store

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        cache = getattr(self._store, "cache", None)
        yield GaugeMetricFamily("modelserve_prefix_cache_tokens", "Tokens of KV held by the prefix cache.",
                                value=cache.cached_tokens if cache else 0)  # fmt: skip
        yield GaugeMetricFamily("modelserve_prefix_cache_bytes", "Memory allocated to the prefix cache, in bytes.",
                                value=cache.bytes if cache else 0)  # fmt: skip
        yield CounterMetricFamily("modelserve_prefix_cache_evictions", "Cached blocks evicted to make room.",
                                  value=cache.evictions if cache else 0)  # fmt: skip


INPUT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class PoolingMetrics:
    """An embed or rerank server's series: requests by route and status (as a generation server
    has them), inputs and their tokens, inputs per forward pass, the queue, time from arrival to
    the answer, and requests turned away or failed."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("modelserve_requests", "HTTP requests by route and status.", ["route", "status"],
                                registry=r)  # fmt: skip
        self.inputs = Counter("modelserve_pooled_inputs", "Inputs encoded (texts, or query-document pairs).", registry=r)
        self.prompt_tokens = Counter("modelserve_prompt_tokens", "Tokens of the inputs encoded.", registry=r)
        self.batch_inputs = Histogram("modelserve_batch_inputs", "Inputs encoded together in one forward pass.",
                                      buckets=INPUT_BUCKETS, registry=r)  # fmt: skip
        self.latency = Histogram("modelserve_pooling_seconds", "From arrival to the answer.", buckets=LATENCY_BUCKETS,
                                 registry=r)  # fmt: skip
        self.rejected = Counter("modelserve_rejected_requests", "Requests answered 503: the queue was full.",
                                registry=r)  # fmt: skip
        self.errors = Counter("modelserve_pooling_errors", "Forward passes that raised.", registry=r)
        self.queue_depth = Gauge("modelserve_queue_depth", "Requests waiting for a forward pass.", registry=r)

    def count_request(self, route: str, status: int) -> None:
        self.requests.labels(route=route, status=str(status)).inc()

    def render(self) -> str:
        return generate_latest(self.registry).decode()
