from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODE = os.environ.get("FAKE_FASTCHAT", "")
Route = Callable[[dict[str, Any]], tuple[int, Any]]


def serve(host: str, port: int, routes: dict[tuple[str, str], Route], *, mute: bool = False) -> None:
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, method: str) -> None:
            if mute:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                threading_event.wait()  # never answer
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}") if length else {}
            route = routes.get((method, self.path))
            code, payload = route(body) if route else (404, {"detail": "Not Found"})
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            self._reply("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._reply("POST")

        def log_message(self, fmt: str, *args: object) -> None:
            print(fmt % args, flush=True)

    import threading

    threading_event = threading.Event()
    server = ThreadingHTTPServer((host, port), Handler)
    print(f"listening on {host}:{port}", flush=True)
    server.serve_forever()


def post(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int)
    p.add_argument("--controller-address")
    p.add_argument("--worker-address")
    p.add_argument("--model-path")
    p.add_argument("--model-names", type=lambda s: s.split(","))
    p.add_argument("--conv-template")
    p.add_argument("--device")
    p.add_argument("--num-gpus", type=int)
    p.add_argument("--dtype")
    p.add_argument("--api-keys", type=lambda s: s.split(","))
    return p


def log(*parts: object) -> None:
    print(*parts, flush=True, file=sys.stdout)
