"""Readiness probes the built-in backends share: each makes the request a real client makes.

Probes are frozen dataclasses (see ``launcher.core.probe``): a deployment's record stores them
and `status`/`health` ask them again later. ``check()`` never raises for network trouble: a
refused connection or a timeout is a failed probe with the reason in its detail. This module
imports no pydantic and no urllib or http.client, because `status` loads it.
"""

from __future__ import annotations

import json
import socket
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from launcher.core.probe import ProbeResult


def request(
    url: str, *, body: dict[str, Any] | None = None, api_key: str | None = None, timeout: float = 5.0
) -> tuple[int, Any]:
    """(status, decoded JSON body or its first 200 characters) for a GET, or a POST of ``body``.

    Plain http is spoken over a socket as HTTP/1.0 (the server closes the connection after the
    body, so no chunked encoding and no keep-alive to handle): http.client would bring in ssl,
    email and idna, a third of what `modelserve status` costs. https goes through http.client.
    """
    parts = urlsplit(url)
    data = json.dumps(body).encode() if body is not None else b""
    headers = {"Host": parts.netloc, "Accept": "application/json", "Connection": "close"}
    if body is not None:
        headers.update({"Content-Type": "application/json", "Content-Length": str(len(data))})
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    method = "POST" if body is not None else "GET"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if parts.scheme == "https":
        return _https(parts.netloc, method, path, data, headers, timeout)
    host = (parts.hostname or "127.0.0.1").strip("[]")
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, parts.port or 80), timeout=timeout) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"{method} {path} HTTP/1.0\r\n{head}\r\n".encode() + data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
            left = deadline - time.monotonic()
            if left <= 0:  # a server that keeps trickling bytes still gets only `timeout`
                raise TimeoutError(f"no complete answer within {timeout:.1f} s")
            sock.settimeout(left)
        raw = b"".join(chunks)
    status_line, _, rest = raw.partition(b"\r\n")
    _, _, payload = rest.partition(b"\r\n\r\n")
    fields = status_line.split(b" ", 2)
    if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
        raise ValueError(f"not an HTTP response: {status_line[:80]!r}")
    return int(fields[1]), _decode(payload)


def _https(netloc: str, method: str, path: str, data: bytes, headers: dict[str, str],
           timeout: float) -> tuple[int, Any]:  # fmt: skip
    import http.client

    conn = http.client.HTTPSConnection(netloc, timeout=timeout)
    try:
        conn.request(method, path, body=data or None, headers=headers)
        resp = conn.getresponse()
        return resp.status, _decode(resp.read())
    except http.client.HTTPException as exc:  # a failed probe, like any other network trouble
        raise ValueError(f"{type(exc).__name__}: {exc}") from None
    finally:
        conn.close()


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return raw[:200].decode(errors="replace")


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
        except (OSError, ValueError) as exc:  # http.client's errors are OSError or ValueError too
            return ProbeResult(False, f"waiting until {self.describe()}: {exc}")

    @abstractmethod
    def _check(self, base: str, timeout: float) -> ProbeResult: ...

    def describe(self) -> str:
        return f"{self._what()} ({self.url})"

    @abstractmethod
    def _what(self) -> str: ...

    def _not_ok(self, status: int, request_line: str, payload: Any) -> ProbeResult:
        """A non-200 answer to ``request_line`` (``GET /v1/models``). 401, 403 and 404 are final:
        the server is up, and waiting will not change a missing or refused key or a route or model
        it does not serve. Anything else (a 503 while loading, ...) may pass on a later try."""
        detail = f"{request_line} -> HTTP {status}: {short(payload)}"
        if status == 401 and not self.api_key:
            return ProbeResult(False, f"the server demands an API key (HTTP 401 on {request_line}): {short(payload)}",
                               final=True, fix=KEY_DEMANDED)  # fmt: skip
        if status == 401:
            return ProbeResult(False, f"the server refused the API key it was given (HTTP 401 on {request_line}): "
                                      f"{short(payload)}", final=True, fix=KEY_REFUSED)  # fmt: skip
        if status == 403:
            return ProbeResult(False, f"the server forbids {request_line} (HTTP 403): {short(payload)}", final=True,
                               fix="check the API key and the server's own access settings")  # fmt: skip
        if status == 404:
            return ProbeResult(False, f"the server has no such route or model (HTTP 404 on {request_line}): "
                                      f"{short(payload)}", final=True, fix=NOT_SERVED)  # fmt: skip
        return ProbeResult(False, detail)


KEY_DEMANDED = ("give `up` the key the server expects (MODELSERVE_API_KEY, --api-key-file or --api-key), or start "
                "the server without one (a key it reads elsewhere, such as VLLM_API_KEY in its environment or "
                "--api-key in its extra arguments)")  # fmt: skip
KEY_REFUSED = ("the server checks another key than the one `up` gave it: look for a second one it reads (VLLM_API_KEY "
               "in its environment, --api-key in its extra arguments)")  # fmt: skip
NOT_SERVED = ("this is not the server the backend expects, or it serves the model under another name: check the "
              "backend (-b), --served-model-name and the server's log")  # fmt: skip


@dataclass(frozen=True)
class HttpOk(HttpProbe):
    path: str = "/"

    def _what(self) -> str:
        return f"GET {self.path or '/'} answers 200"

    def _check(self, base: str, timeout: float) -> ProbeResult:
        status, payload = request(base + (self.path or "/"), api_key=self.api_key, timeout=timeout)
        if status != 200:
            return self._not_ok(status, f"GET {self.path or '/'}", payload)
        return ProbeResult(True, f"GET {self.path or '/'} -> HTTP {status}")


@dataclass(frozen=True)
class OpenAIModelListed(HttpProbe):
    model: str = ""

    def _what(self) -> str:
        return f"/v1/models lists {self.model!r}"

    def _check(self, base: str, timeout: float) -> ProbeResult:
        status, payload = request(base + "/v1/models", api_key=self.api_key, timeout=timeout)
        if status != 200:
            return self._not_ok(status, "GET /v1/models", payload)
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
            return self._not_ok(status, "POST /v1/chat/completions", payload)
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
            return self._not_ok(status, "POST /llm/", payload)
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
        if status != 200:
            return self._not_ok(status, "controller POST /list_models", payload), []
        if not isinstance(payload, dict) or "models" not in payload:
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


@dataclass(frozen=True)
class AnthropicMessagesAnswers(HttpProbe):
    """A 1-token ``POST /v1/messages`` returns a Message (Anthropic's shape)."""

    model: str = ""
    generates: ClassVar[bool] = True

    def _what(self) -> str:
        return "a 1-token POST /v1/messages returns a message"

    def _check(self, base: str, timeout: float) -> ProbeResult:
        body = {"model": self.model, "max_tokens": 1, "messages": [{"role": "user", "content": "Hi"}]}
        status, payload = request(base + "/v1/messages", body=body, api_key=self.api_key, timeout=timeout)
        ok = status == 200 and isinstance(payload, dict) and payload.get("type") == "message"
        return ProbeResult(ok, f"POST /v1/messages -> HTTP {status}" + ("" if ok else f": {short(payload)}"))


@dataclass(frozen=True)
class OpenAIResponsesAnswers(HttpProbe):
    """A 1-token ``POST /v1/responses`` returns a Response object."""

    model: str = ""
    generates: ClassVar[bool] = True

    def _what(self) -> str:
        return "a 1-token POST /v1/responses returns a response"

    def _check(self, base: str, timeout: float) -> ProbeResult:
        body = {"model": self.model, "input": "Hi", "max_output_tokens": 1, "store": False}
        status, payload = request(base + "/v1/responses", body=body, api_key=self.api_key, timeout=timeout)
        ok = status == 200 and isinstance(payload, dict) and payload.get("object") == "response"
        return ProbeResult(ok, f"POST /v1/responses -> HTTP {status}" + ("" if ok else f": {short(payload)}"))


@dataclass(frozen=True)
class EmbeddingAnswers(HttpProbe):
    """A one-input ``POST /v1/embeddings`` (the request an embedding client makes) answers with a
    vector of ``dimensions`` numbers (any size when None)."""

    model: str = ""
    dimensions: int | None = None
    generates: ClassVar[bool] = True  # it runs the model: `status` leaves it out when it can

    def _what(self) -> str:
        size = f"{self.dimensions}-number " if self.dimensions else ""
        return f"a one-input /v1/embeddings returns a {size}vector"

    def _check(self, base: str, timeout: float) -> ProbeResult:
        body = {"model": self.model, "input": "Hi", "encoding_format": "float"}
        status, payload = request(base + "/v1/embeddings", body=body, api_key=self.api_key, timeout=timeout)
        if status != 200:
            return ProbeResult(False, f"POST /v1/embeddings -> HTTP {status}: {short(payload)}")
        try:
            vector = payload["data"][0]["embedding"]
        except (KeyError, IndexError, TypeError):
            return ProbeResult(False, f"/v1/embeddings answered without data[0].embedding: {short(payload)}")
        if not isinstance(vector, list) or not vector or not all(isinstance(x, int | float) for x in vector):
            return ProbeResult(False, f"/v1/embeddings: data[0].embedding is not a list of numbers: {short(vector)}")
        if self.dimensions is not None and len(vector) != self.dimensions:
            return ProbeResult(False, f"/v1/embeddings returned {len(vector)} numbers, not {self.dimensions}")
        return ProbeResult(True, f"a one-input embedding answered ({len(vector)} numbers)")


@dataclass(frozen=True)
class RerankAnswers(HttpProbe):
    """``POST /v1/rerank`` with one query and two documents answers with both, scored."""

    model: str = ""
    generates: ClassVar[bool] = True

    def _what(self) -> str:
        return "a /v1/rerank of two documents returns both, scored"

    def _check(self, base: str, timeout: float) -> ProbeResult:
        body = {"model": self.model, "query": "Hi", "documents": ["Hi", "Bye"]}
        status, payload = request(base + "/v1/rerank", body=body, api_key=self.api_key, timeout=timeout)
        if status != 200:
            return ProbeResult(False, f"POST /v1/rerank -> HTTP {status}: {short(payload)}")
        results = payload.get("results") if isinstance(payload, dict) else None
        indices = sorted(str(r.get("index")) for r in results if isinstance(r, dict)) if isinstance(results, list) else []
        if not isinstance(results, list) or indices != ["0", "1"]:
            return ProbeResult(False, f"/v1/rerank answered without results for documents 0 and 1: {short(payload)}")
        if not all(isinstance(r.get("relevance_score"), int | float) for r in results):
            return ProbeResult(False, f"/v1/rerank: a result has no numeric relevance_score: {short(payload)}")
        return ProbeResult(True, "a rerank of two documents answered")
