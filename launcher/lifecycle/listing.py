"""`modelserve backends`: every registered backend, built-in or plugin, listed the same way."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import backends


@dataclass
class BackendRow:
    name: str
    distribution: str  # who registered it: "modelserve" for the built-ins
    available: bool
    reason: str = ""
    version: str | None = None
    summary: str = ""
    cpu: bool = False
    gpu: bool = False
    capabilities: list[str] = field(default_factory=list)  # APIs first, then features
    surfaces: dict[str, str] = field(default_factory=dict)  # Messages, Responses: native | translated | no
    auto_priority: int | None = None  # `-b auto` tries higher first; None: only when named
    refusals: list[str] = field(default_factory=list)  # "embed: why not", for tasks others serve


def backend_rows() -> list[BackendRow]:
    rows = []
    for name, entry in backends.entries().items():
        try:
            b = backends.get(name)
        except Exception as exc:  # a broken third-party plugin must not break the listing
            rows.append(BackendRow(name, entry.distribution, False, f"cannot load {entry.target}: {exc}"))
            continue
        found = b.inspect(python=sys.executable, deployment=None, local=True).available
        rows.append(BackendRow(
            name=name, distribution=entry.distribution, available=found.ok, reason=found.reason,
            version=found.version, summary=b.summary, cpu=b.supports_cpu, gpu=b.supports_gpu,
            capabilities=b.capabilities.names(), auto_priority=b.auto.priority if b.auto else None,
            surfaces={str(k): str(v) for k, v in b.capabilities.surfaces().items()},
            refusals=[f"{task}: {why}" for task, why in b.capabilities.refusals],
        ))  # fmt: skip
    return rows
