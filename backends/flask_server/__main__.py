"""``python -m backends.flask_server --model DIR``: load, warm up, then bind and serve until SIGTERM.

The port is bound only after the model has loaded and one token has been generated, so a
``/health`` that answers means the server is ready. The API key comes from ``MODELSERVE_API_KEY``
(never argv, where ``ps`` would show it). SIGTERM (or Ctrl-C) drains: new requests get 503 with
Retry-After while those in flight get ``--drain-timeout`` seconds to finish; then it exits 0.

Example::

    OMP_NUM_THREADS=1 python -m backends.flask_server --model ./smollm2-135m --port 8000 --threads 1
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from werkzeug.serving import BaseWSGIServer

    from backends.flask_server.app import InFlight
    from backends.flask_server.engine import Engine

log = logging.getLogger("modelserve.flask_server")

API_KEY_ENV = "MODELSERVE_API_KEY"
# The launcher waits 10 s (a deployment's stop_timeout) between SIGTERM and SIGKILL; the drain
# leaves room in that for the stop after it (STOP_GRACE_S, at most 2 s, and the exit).
DRAIN_TIMEOUT_S = 6.0
STOP_GRACE_S = 1.0  # the scheduler's last step, then as long again for handlers to write their 503s
# backends/flask_server/tools/parsers.py: PARSERS (spelled here so --help imports no torch).
TOOL_PARSERS = ("generic", "hermes", "llama3_json", "mistral", "none")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{value} must be >= 0 seconds")
    return value


def _device(text: str) -> str:
    if text in ("cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not cpu, cuda or cuda:N")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m backends.flask_server",
        description="Serve one causal LM over AgentScope's POST /llm/ and the OpenAI /v1 API.",
        epilog=f"The API key is read from ${API_KEY_ENV}; when set, every route but GET /health needs "
        "'Authorization: Bearer KEY'.",
    )
    p.add_argument("--model", required=True, help="local folder of the model (config.json, weights, tokenizer)")
    p.add_argument("--served-model-name", help="name clients use (default: the folder's basename)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", type=_device, default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    p.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16", "float16"),
        default="auto",
        help="auto: float32 on CPU; bfloat16 on CUDA where supported, else float16",
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=os.cpu_count() or 1,
        help="torch intra-op threads (default: every CPU; one batched engine uses them best)",
    )
    p.add_argument("--max-batch-size", type=_positive_int, default=8,
                   help="rows decoding together (each choice of a request is a row); newcomers join at the next step")  # fmt: skip
    p.add_argument("--kv-budget-tokens", type=_positive_int, default=None,
                   help="KV cache the running rows may hold, in tokens (padding included); above it requests wait "
                        "(default: half the memory free after loading)")  # fmt: skip
    p.add_argument("--max-queue", type=_positive_int, default=256,
                   help="requests that may wait; past that the server answers 503 with Retry-After")  # fmt: skip
    p.add_argument(
        "--max-new-tokens-limit", type=_positive_int, default=4096, help="largest max_new_tokens a request may ask for"
    )
    p.add_argument("--drain-timeout", type=_seconds, default=DRAIN_TIMEOUT_S, metavar="SECONDS",
                   help="on SIGTERM/SIGINT: new requests get 503 while the ones in flight (streams too) get this long "
                        "to finish; what is still running then gets 503 (default: %(default)s; 0: stop at once)")  # fmt: skip
    p.add_argument("--loader", choices=("transformers", "modelscope"), default="transformers")
    p.add_argument(
        "--tool-parser",
        choices=TOOL_PARSERS,
        default="generic",
        help="how the model writes tool calls: its family's format, or generic (tools described in the prompt, "
        "replies constrained to JSON); none: refuse tools; modelserve picks it from the model's chat template",
    )
    p.add_argument("--trust-remote-code", action="store_true", help="run the model folder's own Python code")
    return p


def configure_logging() -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # werkzeug would log every request a second time, in its own format; ours has tokens and seconds.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    served_name = args.served_model_name or Path(args.model).expanduser().resolve().name
    api_key = os.environ.get(API_KEY_ENV) or None

    # Heavy imports only now: --help and argument errors stay instant.
    import torch

    from backends.flask_server.engine import Engine
    from backends.flask_server.loaders import LoadError, load
    from backends.flask_server.memory import default_kv_budget
    from backends.flask_server.metrics import Metrics

    torch.set_num_threads(args.threads)
    try:
        loaded = load(
            path=args.model,
            loader=args.loader,
            device=args.device,
            dtype=args.dtype,
            trust_remote_code=args.trust_remote_code,
        )
    except LoadError as exc:
        log.error("cannot load the model: %s", exc)
        return 2
    log.info(
        "loaded %s as %r with %s in %.1f s: dtype=%s device=%s threads=%d max_batch_size=%d",
        args.model,
        served_name,
        args.loader,
        loaded.seconds,
        str(loaded.dtype).removeprefix("torch."),
        loaded.device,
        torch.get_num_threads(),
        args.max_batch_size,
    )

    engine = Engine(
        loaded.model,
        loaded.tokenizer,
        max_batch_size=args.max_batch_size,
        max_new_tokens_limit=args.max_new_tokens_limit,
        metrics=Metrics(),
        tool_parser=args.tool_parser,
        kv_budget_tokens=args.kv_budget_tokens or default_kv_budget(loaded.model, loaded.device),
        max_queue=args.max_queue,
    )
    log.info("KV budget: %d tokens; queue limit: %d", engine.kv_budget, engine.max_queue)
    engine.start()
    try:
        started = time.monotonic()
        engine.warm_up()
        log.info("warm-up: 1 token in %.2f s", time.monotonic() - started)
    except Exception as exc:
        log.error("the model failed its first generate(): %s", exc)
        engine.stop()
        return 1
    return serve(engine, host=args.host, port=args.port, served_name=served_name, api_key=api_key,
                 drain_timeout=args.drain_timeout)  # fmt: skip


def serve(engine: Engine, *, host: str, port: int, served_name: str, api_key: str | None,
          drain_timeout: float = DRAIN_TIMEOUT_S) -> int:  # fmt: skip
    """Bind, serve until SIGTERM/SIGINT, drain, then stop cleanly. Returns the exit code."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    from backends.flask_server.app import create_app

    app = create_app(engine, served_name=served_name, api_key=api_key)

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
        "serving %r on http://%s:%d (POST /llm/, /v1/chat/completions, /v1/completions; auth %s)",
        served_name,
        host,
        server.port,
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


def _shut_down(server: BaseWSGIServer, engine: Engine, inflight: InFlight, *, drain_timeout: float) -> None:
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


def run() -> int:
    try:
        return main()
    except KeyboardInterrupt:
        # Ctrl-C while loading (the handlers are installed only once serving starts).
        log.info("interrupted during start-up")
        return 130


def exit_now(code: int) -> None:
    """End the process without the interpreter's teardown: freeing torch's and the tokenizer's
    state takes 1-3 s here, all of it inside the launcher's SIGTERM-to-SIGKILL window, and
    nothing is left to do by now (the server writes no files; the log is flushed first)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(run())
