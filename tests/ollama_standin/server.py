"""`ollama serve`: the HTTP server, its route table, and the dispatch that answers a refused
request in Ollama's error shape ({"error": "..."}) or, under /v1/, OpenAI's.

Built from Ollama docs/api.md (GET /api/version {version}; GET / "Ollama is running"),
docs/api/anthropic-compatibility.mdx (/v1/messages answers errors in Anthropic's shape) and Ollama
cmd (a busy port fails with "Error: listen tcp HOST:PORT: bind: address already in use"); the log
lines imitate the server's (slog lines, one [GIN] line per request).
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from datetime import datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from tests.ollama_standin.common import VERSION, log, parse_host
from tests.ollama_standin.handler_base import BadRequest
from tests.ollama_standin.routes_anthropic import AnthropicRoutes
from tests.ollama_standin.routes_inference import InferenceRoutes
from tests.ollama_standin.routes_models import ModelRoutes
from tests.ollama_standin.routes_openai import OpenAIRoutes
from tests.ollama_standin.store import Store


class Handler(ModelRoutes, InferenceRoutes, OpenAIRoutes, AnthropicRoutes):
    def _dispatch(self, method: str) -> None:
        start = time.monotonic()
        self._status = 0
        path = urlsplit(self.path).path
        try:
            self.route(method, path)
        except BadRequest as exc:
            if path == "/v1/messages":  # docs/api/anthropic-compatibility.mdx: Anthropic's error shape
                etype = {400: "invalid_request_error", 404: "not_found_error"}.get(exc.status, "api_error")
                self.send_json(exc.status, {"type": "error", "error": {"type": etype, "message": str(exc)}})
            elif path.startswith("/v1/"):
                etype = {400: "invalid_request_error", 404: "not_found_error"}.get(exc.status, "api_error")
                self.send_json(exc.status, {"error": {"message": str(exc), "type": etype, "param": None,
                                                      "code": None}})  # fmt: skip
            else:
                self.send_json(exc.status, {"error": str(exc)})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        ms = (time.monotonic() - start) * 1000
        stamp = datetime.now().strftime("%Y/%m/%d - %H:%M:%S")
        print(f"[GIN] {stamp} | {self._status:3d} | {ms:9.3f}ms | {self.client_address[0]:>15} | "
              f"{method:<8} \"{path}\"", file=sys.stderr, flush=True)  # fmt: skip

    def do_GET(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's naming
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def route(self, method: str, path: str) -> None:
        routes = {
            ("GET", "/"): self.root, ("HEAD", "/"): self.root,
            ("GET", "/api/version"): self.version, ("GET", "/api/tags"): self.tags, ("GET", "/api/ps"): self.ps,
            ("POST", "/api/pull"): self.pull, ("POST", "/api/create"): self.create,
            ("POST", "/api/chat"): self.chat, ("POST", "/api/generate"): self.generate,
            ("POST", "/api/show"): self.show, ("POST", "/api/copy"): self.copy,
            ("DELETE", "/api/delete"): self.delete,
            ("POST", "/api/embed"): self.embed, ("POST", "/api/embeddings"): self.embeddings,
            ("GET", "/v1/models"): self.v1_models, ("POST", "/v1/chat/completions"): self.v1_chat,
            ("POST", "/v1/completions"): self.v1_completions, ("POST", "/v1/embeddings"): self.v1_embeddings,
            ("POST", "/v1/messages"): self.v1_messages,
        }  # fmt: skip
        handler = routes.get((method, path))
        if handler is not None:
            handler()
        elif path.startswith("/api/blobs/") and method in ("HEAD", "POST"):
            self.blob(method, unquote(path[len("/api/blobs/"):]))
        elif path.startswith("/v1/models/") and method == "GET":
            self.v1_model(unquote(path[len("/v1/models/"):]))
        else:
            self.read_body()
            self.send_empty(404, "404 page not found")

    def root(self) -> None:
        self.send_empty(200, "Ollama is running")

    def version(self) -> None:
        self.send_json(200, {"version": VERSION})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Server6(Server):
    address_family = socket.AF_INET6


def serve() -> int:
    """Serve on $OLLAMA_HOST until SIGTERM or SIGINT; 1 when the address cannot be bound."""
    scheme, host, port = parse_host(os.environ.get("OLLAMA_HOST", ""))
    models_env = os.environ.get("OLLAMA_MODELS")
    root = Path(models_env).expanduser() if models_env else Path(tempfile.mkdtemp(prefix="ollama-standin-"))
    Handler.store = Store(root)
    bind = host or "0.0.0.0"
    cls = Server6 if ":" in bind else Server
    try:
        server = cls((bind, port), Handler)
    except OSError as exc:
        shown = f"[{host}]" if ":" in host else host
        reason = "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc)).lower()
        print(f"Error: listen tcp {shown}:{port}: bind: {reason}", file=sys.stderr, flush=True)
        if not models_env:
            shutil.rmtree(root, ignore_errors=True)
        return 1

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log(f"server config OLLAMA_HOST={scheme}://{host}:{port} OLLAMA_MODELS={root} (modelserve test stand-in)")
    log(f"Listening on {host or '[::]'}:{port} (version {VERSION})")
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        if not models_env:
            shutil.rmtree(root, ignore_errors=True)
    return 0
