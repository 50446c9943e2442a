"""Readiness probes: a real request the way a client makes it, as objects a backend owns.

A probe is a frozen dataclass with ``check(timeout)`` and ``describe()``. The launcher only runs
them (``process.readiness`` waits on them with a deadline) and stores them in the deployment
record, so `status` and `health` can ask again later: :func:`to_dict` / :func:`from_dict` spell a
probe as its import path plus its fields, which is what lets a third-party backend bring its own.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str
    # True when waiting cannot change the answer (a 401, 403 or 404 from a server that is up):
    # readiness stops at once instead of repeating it until the deadline. ``fix`` says what to do.
    final: bool = False
    fix: str | None = None


@runtime_checkable
class Probe(Protocol):
    # True when the check makes the model generate: `status` skips those to stay cheap.
    generates: ClassVar[bool]

    def check(self, timeout: float) -> ProbeResult: ...

    def describe(self) -> str: ...


def to_dict(probe: Probe) -> dict[str, Any]:
    if not dataclasses.is_dataclass(probe) or isinstance(probe, type):
        raise TypeError(f"a probe must be a dataclass instance, not {type(probe).__name__}")
    cls = type(probe)
    return {"type": f"{cls.__module__}:{cls.__qualname__}", **dataclasses.asdict(probe)}


def from_dict(data: dict[str, Any]) -> Probe:
    """The probe :func:`to_dict` wrote. Raises ValueError when its class is gone (a plugin removed)."""
    fields = dict(data)
    target = str(fields.pop("type", ""))
    module_name, _, name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"probe type {target!r} cannot be loaded: {exc}") from None
    probe: Probe = cls(**fields)
    return probe
