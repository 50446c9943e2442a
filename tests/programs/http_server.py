"""A minimal HTTP server answering GET /health, with misbehaviours chosen by flags.

  --ignore-sigterm   keep running on SIGTERM (only SIGKILL stops it)
  --spawn-child      fork a child into the same process group that keeps running
  --never-ready      answer /health with 503 forever
  --ready-after S    answer /health with 503 for S seconds, then 200
  --exit-after S     exit with code 3 S seconds after it started listening (a crash after ready)
  --status CODE      answer /health with CODE forever (401: a server that demands a key it was not given)
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("port", type=int)
parser.add_argument("--ignore-sigterm", action="store_true")
parser.add_argument("--spawn-child", action="store_true")
parser.add_argument("--never-ready", action="store_true")
parser.add_argument("--ready-after", type=float, default=0.0)
parser.add_argument("--exit-after", type=float, default=0.0)
parser.add_argument("--status", type=int, default=0)
args = parser.parse_args()

if args.ignore_sigterm:
    signal.signal(signal.SIGTERM, lambda *_: print("ignoring SIGTERM", flush=True))

if args.spawn_child:
    pid = os.fork()
    if pid == 0:
        # Like vLLM's EngineCore: a helper process that outlives a killed parent.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        while True:
            signal.pause()  # until a signal ends it
    print(f"spawned helper {pid}", flush=True)

started = time.monotonic()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        ready = not args.never_ready and time.monotonic() - started >= args.ready_after
        code = 200 if ready and self.path == "/health" else 503
        if args.status:
            code = args.status
        body = b'{"status": "ok"}' if code == 200 else b'{"status": "loading"}'
        if args.status:
            body = b'{"error": "answered as told (--status)"}'
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *a: object) -> None:
        print("request:", fmt % a, flush=True)


server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
print(f"listening on {args.port}", flush=True)
if args.exit_after:
    import threading

    def crash() -> None:
        time.sleep(args.exit_after)
        print("crashing (exit 3)", flush=True)
        os._exit(3)

    threading.Thread(target=crash, daemon=True).start()
sys.stdout.flush()
server.serve_forever()
