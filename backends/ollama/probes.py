"""Readiness probes on Ollama's native API (docs/api.md)."""

from __future__ import annotations

from dataclasses import dataclass

from backends.probes import HttpProbe, request, short
from launcher.core.probe import ProbeResult


@dataclass(frozen=True)
class OllamaVersion(HttpProbe):
    """GET /api/version -> {"version": ...}: an Ollama server answers."""

    def _what(self) -> str:
        return "/api/version answers"

    def _check(self, base: str, timeout: float) -> ProbeResult:
        status, payload = request(base + "/api/version", timeout=timeout)
        if status != 200:
            return self._not_ok(status, "GET /api/version", payload)
        ok = isinstance(payload, dict) and "version" in payload
        return ProbeResult(ok, f"GET /api/version -> HTTP {status}: {short(payload)}")


@dataclass(frozen=True)
class OllamaModelListed(HttpProbe):
    """GET /api/tags lists ``model`` (a missing tag means ``latest``)."""

    model: str = ""

    def _what(self) -> str:
        return f"/api/tags lists {self.model!r}"

    def _check(self, base: str, timeout: float) -> ProbeResult:
        status, payload = request(base + "/api/tags", timeout=timeout)
        if status != 200:
            return self._not_ok(status, "GET /api/tags", payload)
        names = [m.get("name") for m in (payload or {}).get("models", []) if isinstance(m, dict)]
        wanted = self.model or ""
        found = wanted in names or (":" not in wanted and f"{wanted}:latest" in names)
        return ProbeResult(found, f"/api/tags lists {names}")
