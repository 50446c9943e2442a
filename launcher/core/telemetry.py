"""What a running server tells about its load, declared by its backend's plan and kept in the
deployment's record: the dashboard reads it without knowing any engine.

Names are Prometheus family names as the text format's parser gives them (a counter without its
``_total``). A field left None is a figure the server does not report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Telemetry:
    metrics_path: str | None = None  # Prometheus text, e.g. /metrics
    requests_path: str | None = None  # summaries of recent requests (modelserve's own servers)
    generated_tokens: str | None = None  # counter: tokens generated
    running: str | None = None  # gauge: requests generating now
    queued: str | None = None  # gauge: requests waiting to be admitted
    ttft: str | None = None  # histogram: seconds from arrival to the first token
    kv_used: str | None = None  # gauge: KV-cache tokens held (with kv_budget: the share in use)
    kv_budget: str | None = None  # gauge: KV-cache tokens available
    kv_fraction: str | None = None  # gauge: the share of the KV cache in use, 0..1
    prefix_hit_tokens: str | None = None  # counter: prompt tokens served from a prefix cache
    prefix_query_tokens: str | None = None  # counter: prompt tokens looked up in it
    prefix_cached: str | None = None  # gauge: KV-cache tokens the prefix cache holds (with kv_budget: its share)

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Telemetry:
        """From a record (keys a newer modelserve added are left out)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: str(v) for k, v in data.items() if k in known and v is not None})
