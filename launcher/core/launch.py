"""What a backend's ``plan()`` returns: processes to start, probes to pass, endpoints to hand out.

Plain values with no behaviour of their own: ``process`` starts them, ``agents`` renders the
client endpoints, ``store`` records them. Nothing here knows any engine.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from launcher.core.capabilities import Support, Surface
from launcher.core.names import Api, ClientKind
from launcher.core.probe import Probe
from launcher.core.telemetry import Telemetry

__all__ = ["ClientEndpoint", "ClientKind", "LaunchPlan", "ProcessSpec"]


@dataclass(frozen=True)
class ProcessSpec:
    """One process of a deployment. ``env`` is added to the launcher's environment."""

    role: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    ready: tuple[Probe, ...] = ()
    cwd: str | None = None
    # Names in env whose values are secrets (API keys): never printed, rendered as "***".
    secret_env: frozenset[str] = frozenset()

    def command_line(self) -> str:
        return shlex.join(self.argv)


@dataclass(frozen=True)
class ClientEndpoint:
    """What an agent client needs to reach the server; ``agents`` renders it per client."""

    kind: ClientKind
    url: str  # /llm/ URL, OpenAI base URL ending in /v1, the Ollama host URL, or a full route URL
    model_name: str
    api_key: str | None = None
    dimensions: int | None = None  # an embedding endpoint: the vectors' size (AgentScope 1.x must state it)


@dataclass(frozen=True)
class LaunchPlan:
    backend: str
    api: Api
    served_model_name: str
    processes: tuple[ProcessSpec, ...]
    endpoints: Mapping[str, str]  # name -> URL, printed in the summary
    clients: tuple[ClientEndpoint, ...] = ()
    notes: tuple[str, ...] = ()  # decisions worth saying out loud ("dtype float32: CPU")
    # True when the plan reuses a server that already runs (nothing to start or stop).
    external: bool = False
    # What runs the engine, for status ("entry": "python -m vllm...", "version": ...).
    engine: Mapping[str, str] = field(default_factory=dict)
    # Checked after Backend.after_start() (e.g. Ollama: the model is present once pulled).
    final_probes: tuple[Probe, ...] = ()
    # How this deployment serves tool calls, for the summary ("hermes parser", "not supported").
    tools: str = ""
    # Where its load can be read (Prometheus names, request summaries): the dashboard's charts.
    telemetry: Telemetry | None = None
    # How it serves each agent API surface: "native" | "translated" | "no" (lifecycle.fronted).
    surfaces: Mapping[Surface, Support] = field(default_factory=dict)

    @property
    def probes(self) -> tuple[Probe, ...]:
        """Every probe in the order `up` passes them."""
        return (*(p for spec in self.processes for p in spec.ready), *self.final_probes)
