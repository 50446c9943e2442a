"""Serving the app over HTTP: bind, serve until SIGTERM/SIGINT, drain, stop.

SIGTERM (or Ctrl-C) drains: new requests get 503 with Retry-After while those in flight get
``drain_timeout`` seconds to finish; then the engine stops and the process exits 0.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

from backends.builtin_server.http.state import SERVES

if TYPE_CHECKING:
    from werkzeug.serving import BaseWSGIServer

    from backends.builtin_server.http.app import InFlight
    from backends.builtin_server.http.state import Runner

log = logging.getLogger("modelserve.server")

# The launcher waits 10 s (a deployment's stop_timeout) between SIGTERM and SIGKILL; the drain
# leaves room in that for the stop after it (STOP_GRACE_S, at most 2 s, and the exit).
DRAIN_TIMEOUT_S = 6.0
STOP_GRACE_S = 1.0  # the scheduler's last step, then as long again for handlers to write their 503s


def serve(engine: Runner, *, host: str, port: int, served_name: str, api_key: str | None,
          drain_timeout: float = DRAIN_TIMEOUT_S, task: str = "generate") -> int:  # fmt: skip
    """Bind, serve until SIGTERM/SIGINT, drain, then stop cleanly. Returns the exit code."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    from backends.builtin_server.http.app import create_app

    app = create_app(engine, served_name=served_name, api_key=api_key, task=task)

    class QuietHandler(WSGIRequestHandler):
        # The app logs each request once (route, status, tokens, seconds); werkzeug's line is noise.
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            return None

    listener = _listen(host, port)
    if listener is None:
        engine.stop()
        return 1
    try:
        server = make_server(host, port, app, threaded=True, request_handler=QuietHandler, fd=listener.fileno())
    finally:
        listener.close()  # werkzeug works on its own duplicate of the descriptor
    http = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True)
    stop_requested = _record_stop_signals()
    http.start()
    log.info(
        "serving %r on http://%s:%d (%s; auth %s)",
        served_name,
        host,
        server.port,
        SERVES.get(task, task),
        "on" if api_key else "off",
    )
    code = 0
    # Short waits: a signal delivered to another thread does not interrupt this one, and its
    # handler runs only once the wait times out; 0.1 s bounds how late the drain begins.
    while not stop_requested.wait(timeout=0.1):
        if not http.is_alive() or not engine.alive():
            log.error("the %s thread died; exiting", "http" if not http.is_alive() else "scheduler")
            code = 1
            break
    # Nothing can finish once a thread has died: no drain then.
    _shut_down(server, engine, app.extensions["modelserve.inflight"], drain_timeout=drain_timeout if code == 0 else 0)
    return code


def _listen(host: str, port: int) -> socket.socket | None:
    """A listening socket, or None after logging why not.

    Bind ourselves and hand werkzeug the socket: its own bind prints to stderr and calls
    sys.exit on EADDRINUSE, which would skip our message and the engine shutdown.
    """
    from werkzeug.serving import select_address_family

    try:
        listener = socket.socket(select_address_family(host, port), socket.SOCK_STREAM)
        # A restart right after a stop must not fail on the old socket's TIME_WAIT.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(128)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s; pick another --port or stop what holds it", host, port, exc)
        return None
    return listener


def _record_stop_signals() -> threading.Event:
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Only record it: the serve loop does the shutdown, outside the signal handler.
        stop_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop_requested


def _shut_down(server: BaseWSGIServer, engine: Runner, inflight: InFlight, *, drain_timeout: float) -> None:
    """Drain, then stop: new requests get 503 at once; those in flight get ``drain_timeout`` seconds
    to finish; what still runs after that is cut short with a 503 (a stream: an error event)."""
    # A second SIGTERM / Ctrl-C now ends the process at once, should the drain or the stop hang.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    started = time.monotonic()
    admitted = inflight.drain()
    log.info("draining: %d request(s) in flight get up to %.1f s to finish; new ones get 503", admitted, drain_timeout)
    _wait_until(lambda: inflight.count == 0, drain_timeout)
    cut_short = inflight.count  # only requests admitted before the drain are counted
    server.shutdown()  # no new connections
    engine.stop(timeout=STOP_GRACE_S)  # running generate() stops at its next step; queued requests get 503
    # Let handlers write those answers (bounded: a client that stopped reading must not hold us).
    _wait_until(lambda: inflight.count == 0, STOP_GRACE_S)
    if inflight.count:
        log.warning("exiting with %d response(s) still being written", inflight.count)
    server.server_close()
    log.info("stopped: %d of %d request(s) in flight finished during the drain, %d cut short with 503; %.2f s",
             admitted - cut_short, admitted, cut_short, time.monotonic() - started)  # fmt: skip


def _wait_until(done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.02)
