"""Serving the app over HTTP: bind, serve until SIGTERM/SIGINT, drain, stop.

The HTTP server is granian's, run inside this process (http/granian_worker.py says why): bounded
threads and connections, and a header timeout that closes slow, silent and idle connections.
SIGTERM (or Ctrl-C) drains: new requests get 503 with Retry-After while those in flight get
``drain_timeout`` seconds to finish; then the engine stops and the process exits 0.
"""

from __future__ import annotations

import logging
import resource
import signal
import socket
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

from backends.builtin_server.http.granian_worker import HttpLimits
from backends.builtin_server.http.state import SERVES

if TYPE_CHECKING:
    from backends.builtin_server.http.app import InFlight
    from backends.builtin_server.http.granian_worker import GranianWorker
    from backends.builtin_server.http.state import Runner

log = logging.getLogger("modelserve.server")

# The launcher waits 10 s (a deployment's stop_timeout) between SIGTERM and SIGKILL; the drain
# leaves room in that for the stop after it (STOP_GRACE_S, at most 2 s, and the exit).
DRAIN_TIMEOUT_S = 6.0
STOP_GRACE_S = 1.0  # the scheduler's last step, then as long again for handlers to write their 503s
HEADER_TIMEOUT_S = 30.0  # hyper's default; nginx allows 60 s
MAX_CONNECTIONS = 10_000
FD_RESERVE = 256  # descriptors besides connections: model files, the tokenizer, torch, logs


def serve(engine: Runner, *, host: str, port: int, served_name: str, api_key: str | None, limits: HttpLimits,
          drain_timeout: float = DRAIN_TIMEOUT_S, task: str = "generate") -> int:  # fmt: skip
    """Bind, serve until SIGTERM/SIGINT, drain, then stop cleanly. Returns the exit code."""
    from backends.builtin_server.http.app import create_app
    from backends.builtin_server.http.granian_worker import GranianWorker

    app = create_app(engine, served_name=served_name, api_key=api_key, task=task)
    limits = within_fd_limit(limits)
    listener = _listen(host, port, limits.backlog)
    if listener is None:
        engine.stop()
        return 1
    try:
        server = GranianWorker(app, listener, limits)
        bound_port = listener.getsockname()[1]
    finally:
        listener.close()  # granian works on its own duplicate of the descriptor
    stop_requested = _record_stop_signals()
    server.start()
    log.info("serving %r on http://%s:%d (%s; auth %s; %d HTTP threads, at most %d connections, %.0f s for headers)",
             served_name, host, bound_port, SERVES.get(task, task), "on" if api_key else "off", limits.threads,
             limits.max_connections, limits.header_timeout)  # fmt: skip
    code = 0
    # Short waits: a signal delivered to another thread does not interrupt this one, and its
    # handler runs only once the wait times out; 0.1 s bounds how late the drain begins.
    while not stop_requested.wait(timeout=0.1):
        if not engine.alive():
            log.error("the scheduler thread died; exiting")
            code = 1
            break
    # Nothing can finish once the scheduler has died: no drain then.
    _shut_down(server, engine, app.extensions["modelserve.inflight"], bound_port,
               drain_timeout=drain_timeout if code == 0 else 0)  # fmt: skip
    return code


def default_threads(max_batch_size: int, max_queue: int) -> int:
    """A thread for every request the engine may hold (running or queued: each waits on its own
    thread), so its queue limit answers 503 rather than requests waiting unseen for a thread;
    plus a few for /health, /metrics and errors. Idle threads end by themselves."""
    return max_batch_size + max_queue + 16


def within_fd_limit(limits: HttpLimits) -> HttpLimits:
    """Raise the soft descriptor limit to the hard one (often 1,024 soft), and serve no more
    connections than it allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard == resource.RLIM_INFINITY or limits.max_connections + FD_RESERVE <= hard:
        return limits
    allowed = max(1, hard - FD_RESERVE)
    log.warning("at most %d connections, not %d: the descriptor limit is %d (raise it: ulimit -Hn, or "
                "LimitNOFILE= in a systemd unit)", allowed, limits.max_connections, hard)  # fmt: skip
    return HttpLimits(threads=limits.threads, max_connections=allowed, header_timeout=limits.header_timeout,
                      backlog=limits.backlog)  # fmt: skip


def _listen(host: str, port: int, backlog: int) -> socket.socket | None:
    """A listening socket, or None after logging why not (bound here, so the message and the
    engine's shutdown are ours whatever the server)."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        # A restart right after a stop must not fail on the old socket's TIME_WAIT.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(backlog)
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


def _shut_down(server: GranianWorker, engine: Runner, inflight: InFlight, port: int, *, drain_timeout: float) -> None:
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
    server.stop()  # no new connections; each open one closes once its response is written
    engine.stop(timeout=STOP_GRACE_S)  # running generate() stops at its next step; queued requests get 503
    # Let handlers write those answers (bounded: a client that stopped reading must not hold us).
    _wait_until(lambda: inflight.count == 0, STOP_GRACE_S)
    # A body that has ended may still be on its way out of granian: wait (bounded) for it to close
    # the connections, or the exit would cut their last bytes.
    _wait_until(lambda: not _connections(port), STOP_GRACE_S)
    if inflight.count:
        log.warning("exiting with %d response(s) still being written", inflight.count)
    log.info("stopped: %d of %d request(s) in flight finished during the drain, %d cut short with 503; %.2f s",
             admitted - cut_short, admitted, cut_short, time.monotonic() - started)  # fmt: skip


def _wait_until(done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.02)


def _connections(port: int) -> int:
    """This process's established TCP connections on ``port`` (its clients)."""
    import psutil

    return sum(1 for c in psutil.Process().net_connections(kind="tcp")
               if c.laddr and c.laddr[1] == port and c.status == psutil.CONN_ESTABLISHED)  # fmt: skip
