"""The echo engine: an OpenAI-shaped HTTP server that answers with the last user message.

    python -m modelserve_echo.server --port 8000 --served-model-name echo [--prefix "echo: "]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def make_handler(served: str, prefix: str, api_key: str | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            if api_key is None or self.headers.get("Authorization") == f"Bearer {api_key}":
                return True
            self._send(401, {"error": {"message": "missing or wrong API key", "type": "authentication_error"}})
            return False

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, {"status": "ok"})
            elif not self._authorized():
                return
            elif self.path == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": served, "object": "model", "owned_by": "echo"}]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})

        def do_POST(self) -> None:
            if not self._authorized():
                return
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
                return
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            if body.get("model") != served:
                self._send(404, {"error": {"message": f"The model `{body.get('model')}` does not exist."}})
                return
            users = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
            text = prefix + (users[-1] if users else "")
            self._send(200, {
                "id": f"chatcmpl-echo-{time.time_ns()}", "object": "chat.completion", "created": int(time.time()),
                "model": served,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": len(text.split()), "total_tokens": 0},
            })  # fmt: skip

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            print(f"{self.command} {self.path} {args[1] if len(args) > 1 else ''}", flush=True)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--served-model-name", required=True)
    parser.add_argument("--prefix", default="echo: ")
    args = parser.parse_args()
    handler = make_handler(args.served_model_name, args.prefix, os.environ.get("ECHO_API_KEY"))
    server = ThreadingHTTPServer((args.host, args.port), handler)
    print(f"echo engine serving {args.served_model_name!r} on {args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
