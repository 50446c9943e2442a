"""Prometheus text metrics, kept by hand: one lock, a few counters and two histograms.

prometheus_client is not a dependency of the hf extra, and the handful of series here do not need it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64)
SECONDS_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Histogram:
    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.count += 1

    def render(self, name: str) -> list[str]:
        lines = [f'{name}_bucket{{le="{_fmt(b)}"}} {c}' for b, c in zip(self.buckets, self.counts, strict=True)]
        lines.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        lines.append(f"{name}_sum {_fmt(self.total)}")
        lines.append(f"{name}_count {self.count}")
        return lines


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Metrics:
    """Thread-safe: HTTP threads count requests, the scheduler thread counts batches and tokens."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, int], int] = {}
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.generate_seconds = Histogram(SECONDS_BUCKETS)
        self.generate_errors = 0
        # Gauges read from the engine at scrape time (the engine sets these callables).
        self.queue_depth: Callable[[], int] = lambda: 0
        self.running: Callable[[], int] = lambda: 0

    def count_request(self, route: str, status: int) -> None:
        with self._lock:
            key = (route, status)
            self._requests[key] = self._requests.get(key, 0) + 1

    def count_tokens(self, prompt: int, completion: int) -> None:
        with self._lock:
            self.prompt_tokens += prompt
            self.completion_tokens += completion

    def observe_generate(self, batch_size: int, seconds: float) -> None:
        with self._lock:
            self.batch_size.observe(batch_size)
            self.generate_seconds.observe(seconds)

    def count_generate_error(self) -> None:
        with self._lock:
            self.generate_errors += 1

    def render(self) -> str:
        depth, running = self.queue_depth(), self.running()
        with self._lock:
            out = [
                "# HELP modelserve_requests_total HTTP requests by route and status.",
                "# TYPE modelserve_requests_total counter",
            ]
            for (route, status), n in sorted(self._requests.items()):
                out.append(f'modelserve_requests_total{{route="{_escape(route)}",status="{status}"}} {n}')
            out += [
                "# HELP modelserve_prompt_tokens_total Prompt tokens of completed generations.",
                "# TYPE modelserve_prompt_tokens_total counter",
                f"modelserve_prompt_tokens_total {self.prompt_tokens}",
                "# HELP modelserve_completion_tokens_total New tokens of completed generations (eos excluded).",
                "# TYPE modelserve_completion_tokens_total counter",
                f"modelserve_completion_tokens_total {self.completion_tokens}",
                "# HELP modelserve_batch_size Requests per generate() call.",
                "# TYPE modelserve_batch_size histogram",
                *self.batch_size.render("modelserve_batch_size"),
                "# HELP modelserve_generate_seconds Wall time of one generate() call.",
                "# TYPE modelserve_generate_seconds histogram",
                *self.generate_seconds.render("modelserve_generate_seconds"),
                "# HELP modelserve_generate_errors_total generate() calls that raised.",
                "# TYPE modelserve_generate_errors_total counter",
                f"modelserve_generate_errors_total {self.generate_errors}",
                "# HELP modelserve_queue_depth Requests waiting for the scheduler.",
                "# TYPE modelserve_queue_depth gauge",
                f"modelserve_queue_depth {depth}",
                "# HELP modelserve_running_requests Requests inside the generate() call now running.",
                "# TYPE modelserve_running_requests gauge",
                f"modelserve_running_requests {running}",
            ]
        return "\n".join(out) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
