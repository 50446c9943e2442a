"""Request and response plumbing shared by the route groups: reading (also chunked) bodies,
JSON, NDJSON and SSE answers, and what several routes do alike (look a model up, keep it "loaded",
the duration statistics).

Built from Ollama docs/api.md and docs/api/errors.mdx: errors are {"error": "..."} with
400/404/500...; mid-stream the error is an NDJSON line and the status stays 200; durations are
nanoseconds; keep_alive is seconds or a duration string, 0 unloads.
"""

from __future__ import annotations

import json
import re
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.ollama_standin.common import compact
from tests.ollama_standin.store import Store, display_name, parse_name


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class BaseHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ollama-standin"
    store: Store  # set on the class by serve()
    _status: int  # the status sent, for the [GIN] line

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # one [GIN] line per request instead, written by _dispatch

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def json_body(self) -> dict[str, Any]:
        raw = self.read_body()
        if not raw.strip():
            raise BadRequest(400, "missing request body")
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise BadRequest(400, f"invalid request body: {exc}") from None
        if not isinstance(body, dict):
            raise BadRequest(400, "invalid request body: expected a JSON object")
        return body

    def send_json(self, status: int, obj: Any) -> None:
        data = compact(obj)
        self._status = status
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_empty(self, status: int, text: str = "") -> None:
        data = text.encode()
        self._status = status
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def start_stream(self, content_type: str) -> None:
        self._status = 200
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        if content_type == "text/event-stream":
            self.send_header("Cache-Control", "no-cache")
        self.end_headers()

    def chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    def end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def ndjson(self, obj: Any) -> None:
        self.chunk(compact(obj) + b"\n")

    def sse(self, obj: Any) -> None:
        self.chunk(b"data: " + (obj if isinstance(obj, bytes) else compact(obj)) + b"\n\n")

    def require_model(self, name: Any) -> tuple[str, dict[str, Any]]:
        if not isinstance(name, str) or not name.strip():
            raise BadRequest(400, "model is required")
        manifest = self.store.get(name)
        if manifest is None:
            raise BadRequest(404, f'model "{name}" not found, try pulling it first')
        host, namespace, model, tag = parse_name(name)
        return display_name(host, namespace, model, tag), manifest

    def touch(self, name: str, keep_alive: Any) -> None:
        seconds = 300.0
        if isinstance(keep_alive, (int, float)):
            seconds = float(keep_alive)
        elif isinstance(keep_alive, str):
            match = re.fullmatch(r"(-?\d+(?:\.\d+)?)(ms|s|m|h)?", keep_alive.strip())
            if match:
                seconds = float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match.group(2) or "s"]
        if seconds == 0:
            self.store.loaded.pop(name, None)
        else:
            self.store.loaded[name] = time.time() + (10**9 if seconds < 0 else seconds)

    def stats(self, start: float, prompt_tokens: int, eval_tokens: int) -> dict[str, int]:
        total = max(1, int((time.monotonic() - start) * 1e9))
        return {"total_duration": total, "load_duration": total // 10, "prompt_eval_count": prompt_tokens,
                "prompt_eval_duration": total // 5, "eval_count": eval_tokens, "eval_duration": total // 2}  # fmt: skip
