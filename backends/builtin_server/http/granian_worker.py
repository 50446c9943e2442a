"""granian's HTTP/1.1 server (Rust, hyper) running the WSGI app inside this process, on our socket.

Why granian, measured against the others on a small Flask app (issue 18): with 8,000 connections
held open, half trickling a header byte a second and half silent, a normal request was answered
in 79 ms and every slow connection was closed by ``header_read_timeout`` (which also ends idle
keep-alive connections). werkzeug's threaded server never closed them and at 8,000 gave no answer
in 30 s (the issue's figure); gunicorn's gthread
none in 30 s at 1,000; waitress answered but never closed the tricklers (its timeout is one of
inactivity) and its poll loop took up to 5.7 s per request at 8,000; hypercorn closed them but
keeps running a WSGI body after its client hangs up, so a cancelled stream would go on
generating. granian streams each chunk as it is yielded and closes the body when the client goes.
What it does not bound: a request whose *body* trickles in holds one of ``threads`` until the
body is complete (granian calls the app once the headers are in).

granian's own entry points (its CLI, ``Granian(...).serve()``) bind the port and import the app in
worker *processes*. The model must stay in this process, loaded before the port opens, and our
drain must own SIGTERM, so this starts one worker the way granian's threaded server
(granian/server/mt.py) does. Those names are granian's internals: pyproject pins its minor
version, the arguments go by keyword, and every server test runs through here.
"""

from __future__ import annotations

import importlib
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class HttpLimits:
    """What one slow or greedy client can take from the server."""

    threads: int  # Python threads running requests; a stream holds one for its whole reply
    max_connections: int  # open at once; past it new connections wait in the listen backlog
    header_timeout: float  # seconds for a request's headers to arrive, and for an idle keep-alive gap
    backlog: int = 1024


class GranianWorker:
    """Serves ``app`` on ``listener`` until :meth:`stop`; requests run on granian's Python threads."""

    def __init__(self, app: WsgiApp, listener: socket.socket, limits: HttpLimits) -> None:
        from granian.http import HTTP1Settings

        # Untyped on purpose: the native module's .pyi lags its binary (2.8.9 takes ``ipc`` and has
        # ``serve_str``, its stub neither), so the calls are checked by the tests, not by mypy.
        native: Any = importlib.import_module("granian._granian")
        self._app = app
        self._stop = native.WorkerSignal()
        # granian owns (and closes on stop) its own descriptor of the listening socket.
        sock = native.SocketHolder(os.dup(listener.fileno()), False, limits.backlog)
        self._worker = native.WSGIWorker(
            worker_id=1,
            sock=(None, sock),
            ipc=None,
            threads=1,  # the Rust runtime's I/O thread: plenty for one process's connections
            py_threads=limits.threads,
            py_threads_idle_timeout=30,  # threads beyond those in use end after 30 s idle
            backpressure=limits.max_connections,
            http_mode="1",
            http1_opts=HTTP1Settings(header_read_timeout=round(limits.header_timeout * 1000), keep_alive=True),
        )

    def start(self) -> None:
        """Start serving; returns at once (granian runs on threads of its own)."""
        from granian._loops import loops
        from granian.wsgi import _callback_wrapper

        futures: Any = importlib.import_module("granian._futures")  # untyped
        # WSGI calls run on granian's threads; the event loop only carries its scheduler's callbacks.
        loop = loops.get("asyncio")
        scheduler = futures._new_cbscheduler(loop, _callback_wrapper(self._app, {}, None), impl_asyncio=False)
        self._worker.serve_str(scheduler, loop, self._stop)

    def stop(self) -> None:
        """Accept no more connections; those open get their current response finished, then close."""
        self._stop.set()
