"""The gateway's Prometheus metrics, per member (prometheus-client, its own registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "modelserve_gateway_"
LOAD_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(PREFIX + "requests", "Requests answered, by member and HTTP status",
                                ["member", "code"], registry=r)  # fmt: skip
        self.errors = Counter(PREFIX + "errors", "Failed starts, lost members and upstream errors", ["member"],
                              registry=r)  # fmt: skip
        self.loads = Counter(PREFIX + "loads", "Times a member was started", ["member"], registry=r)
        self.load_seconds = Histogram(PREFIX + "load_seconds", "Seconds from start to ready", ["member"],
                                      buckets=LOAD_BUCKETS, registry=r)  # fmt: skip
        self.queue_wait = Histogram(PREFIX + "queue_wait_seconds", "Seconds a request waited for a slot",
                                    ["member"], buckets=WAIT_BUCKETS, registry=r)  # fmt: skip
        self.in_flight = Gauge(PREFIX + "in_flight", "Requests in flight", ["member"], registry=r)
        self.loaded = Gauge(PREFIX + "loaded", "1 when the member is loaded", ["member"], registry=r)
        self.rejected = Counter(PREFIX + "rejected", "Requests refused with 429/503 (queue full, fleet busy)",
                                ["member"], registry=r)  # fmt: skip

    def declare(self, members: list[str]) -> None:
        """Every member shows up in /metrics from the start, loaded or not."""
        for name in members:
            self.loaded.labels(name).set(0)
            self.in_flight.labels(name).set(0)
            self.loads.labels(name)
            self.errors.labels(name)
