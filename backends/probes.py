"""Readiness probes the built-in backends share: each makes the request a real client makes.

Probes are frozen dataclasses (see ``launcher.core.probe``): a deployment's record stores them
and `status`/`health` ask them again later. ``check()`` never raises for network trouble: a
refused connection or a timeout is a failed probe with the reason in its detail. This module
imports no pydantic and no urllib (http.client is enough and cheaper), because `status` loads it.
"""

from __future__ import annotations

import http.client
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from launcher.core.probe import ProbeResult


def request(
    url: str, *, body: dict[str, Any] | None = None, api_key: str | None = None, timeout: float = 5.0
) -> tuple[int, Any]:
    """(status, decoded JSON body or its first 200 characters) for a GET, or a POST of ``body``."""
    parts = urlsplit(url)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("POST" if body is not None else "GET", path, body=data, headers=headers)
        resp = conn.getresponse()
        raw, status = resp.read(), resp.status
    finally:
        conn.close()
    try:
        payload = json.loads(raw) if raw else None
    except ValueError:
        payload = raw[:200].decode(errors="replace")
    return status, payload


def short(payload: Any, limit: int = 200) -> str:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass(frozen=True)
class HttpProbe(ABC):
    """Base of the probes here: ``url`` is the server's base URL."""

    url: str
    api_key: str | None = None
    generates: ClassVar[bool] = False

    def check(self, timeout: float) -> ProbeResult:
        try:
            return self._check(self.url.rstrip("/"), timeout)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return ProbeResult(False, f"waiting until {self.describe()}: {exc}")

    @abstractmethod
    def _check(self, base: str, timeout: float) -> ProbeResult: ...

    def describe(self) -> str:
        return f"{self._what()} ({self.url})"

    @abstractmethod
    def _what(self) -> str: ...


@dataclass(frozen=True)
class HttpOk(HttpProbe):
    path: str = "/"

    def _what(self) -> str:
        return f"GET {self.path or '/'} answers 200"

    def _check(self, base: str, timeout: float) -> ProbeResult:
        status, _ = request(base + (self.path or "/"), api_key=self.api_key, timeout=timeout)
        return ProbeResult(status == 200, f"GET {self.path or '/'} -> HTTP {status}")


@dataclass(frozen=True)
class OpenAIModelListed(HttpProbe):
    model: str = ""

    def _what(self) -> str:
        return f"/v1/models lists {self.model!r}"

    def _check(self, base: str, timeout: float) -> ProbeResult:
        status, payload = request(base + "/v1/models", api_key=self.api_key, timeout=timeout)
        if status != 200:
            return ProbeResult(False, f"GET /v1/models -> HTTP {status}: {short(payload)}")
        ids = [m.get("id") for m in (payload or {}).get("data", []) if isinstance(m, dict)]
        if self.model not in ids:
            return ProbeResult(False, f"/v1/models lists {ids}, not {self.model!r} yet")
        return ProbeResult(True, f"/v1/models lists {self.model!r}")


@dataclass(frozen=True)
class OpenAIChatAnswers(HttpProbe):
    model: str = ""
    generates: ClassVar[bool] = True

    def _what(self) -> str:
        return "a 1-token /v1/chat/completions succeeds"

    def _check(self, base: str, timeout: float) -> ProbeResult:
        body = {"model": self.model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1,
                "temperature": 0}  # fmt: skip
        status, payload = request(base + "/v1/chat/completions", body=body, api_key=self.api_key, timeout=timeout)
        if status != 200:
            return ProbeResult(False, f"POST /v1/chat/completions -> HTTP {status}: {short(payload)}")
        try:
            payload["choices"][0]["message"]
        except (KeyError, IndexError, TypeError):
            return ProbeResult(False, f"/v1/chat/completions answered without choices[0].message: {short(payload)}")
        return ProbeResult(True, "a 1-token chat completion answered")


@dataclass(frozen=True)
class PostLlmAnswers(HttpProbe):
    """AgentScope's ``post_api_chat`` request, answered with its envelope."""

    generates: ClassVar[bool] = True

    def _what(self) -> str:
        return "a 1-token POST /llm/ returns the AgentScope envelope"

    def _check(self, base: str, timeout: float) -> ProbeResult:
        body = {"messages": [{"role": "user", "content": "Hi"}], "max_new_tokens": 1}
        status, payload = request(base + "/llm/", body=body, api_key=self.api_key, timeout=timeout)
        if status != 200:
            return ProbeResult(False, f"POST /llm/ -> HTTP {status}: {short(payload)}")
        try:
            content = payload["data"]["response"]["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return ProbeResult(False, f"POST /llm/ answered without the AgentScope envelope: {short(payload)}")
        if not isinstance(content, str):
            return ProbeResult(False, "POST /llm/: message.content is not a string")
        return ProbeResult(True, "POST /llm/ returned the envelope")


@dataclass(frozen=True)
class ControllerAnswers(HttpProbe):
    """A FastChat controller: its own API is POST /list_models -> {"models": [registered names]}."""

    def _what(self) -> str:
        return "the FastChat controller answers POST /list_models"

    def _models(self, base: str, timeout: float) -> tuple[ProbeResult | None, list[Any]]:
        status, payload = request(base + "/list_models", body={}, timeout=timeout)
        if status != 200 or not isinstance(payload, dict) or "models" not in payload:
            return ProbeResult(False, f"controller POST /list_models -> HTTP {status}: {short(payload)}"), []
        return None, list(payload["models"])

    def _check(self, base: str, timeout: float) -> ProbeResult:
        failed, _ = self._models(base, timeout)
        return failed or ProbeResult(True, "the controller answers")


@dataclass(frozen=True)
class WorkerRegistered(ControllerAnswers):
    """A FastChat worker has registered ``model`` with the controller at ``url``."""

    model: str = ""

    def _what(self) -> str:
        return f"a worker has registered {self.model!r} with the controller"

    def _check(self, base: str, timeout: float) -> ProbeResult:
        failed, names = self._models(base, timeout)
        if failed is not None:
            return failed
        if self.model not in names:
            return ProbeResult(False, f"the controller lists {names}, no worker has registered {self.model!r} yet")
        return ProbeResult(True, f"a worker serves {self.model!r}")
