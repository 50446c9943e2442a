"""The Flask app: the routes blueprint plus what cuts across them (auth, request log, errors).

Every error, including unexpected ones, leaves as a JSON body in OpenAI's shape.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, g, request
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.wsgi import ClosingIterator

from backends.builtin_server.api.validation import api_error_from_validation
from backends.builtin_server.errors import ApiError
from backends.builtin_server.http.routes import ROUTES_HELP, api
from backends.builtin_server.http.state import EXTENSION, ServerState, current_state, json_response
from surfaces import anthropic

if TYPE_CHECKING:
    from backends.builtin_server.http.state import Runner

log = logging.getLogger("modelserve.server")

OPEN_PATHS = frozenset({"/health"})
# Polled every second or so by probes, Prometheus and the dashboard: their successes are logged
# at DEBUG only, or the log would hold nothing else.
POLLED_PATHS = frozenset({"/health", "/metrics", "/modelserve/requests"})
# While draining, /metrics still answers (the drain is worth watching) and /health says "draining".
DRAIN_OPEN_PATHS = frozenset({"/metrics"})
ADMITTED = "modelserve.admitted"  # WSGI environ key: False for a request that arrived while draining
DRAIN_RETRY_AFTER_S = 5


class InFlight:
    """WSGI middleware counting requests whose response body has not been closed yet; after
    :meth:`drain`, new requests are not counted and get a 503 (``_refuse_while_draining``).

    A graceful stop drains: it waits (bounded) for this count to reach 0, so the requests admitted
    before it finish, streams included (a stream counts until its body ends). Admission and the
    count change under one lock, so a request is either counted and served, or refused.
    """

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self._wsgi_app = wsgi_app
        self._lock = threading.Lock()
        self._count = 0
        self._draining = False

    @property
    def count(self) -> int:
        return self._count

    def drain(self) -> int:
        """Admit no more requests from now on; returns how many are being answered."""
        with self._lock:
            self._draining = True
            return self._count

    def _add(self, delta: int) -> None:
        with self._lock:
            self._count += delta

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with self._lock:
            admitted = environ[ADMITTED] = not self._draining
            self._count += admitted
        if not admitted:
            return self._wsgi_app(environ, start_response)  # a 503, written at once: not waited for
        try:
            body = self._wsgi_app(environ, start_response)
        except BaseException:
            self._add(-1)
            raise
        return ClosingIterator(body, [lambda: self._add(-1)])


def create_app(engine: Runner, *, served_name: str, api_key: str | None = None, created: int | None = None,
               task: str = "generate") -> Flask:  # fmt: skip
    """The Flask app; ``app.extensions["modelserve.inflight"]`` is its :class:`InFlight` counter.
    ``engine``: the generation scheduler, or for task embed / rerank the pooling engine."""
    app = Flask(__name__)
    inflight = InFlight(app.wsgi_app)
    app.wsgi_app = inflight  # type: ignore[method-assign]
    app.extensions["modelserve.inflight"] = inflight
    started = int(created if created is not None else time.time())
    app.extensions[EXTENSION] = ServerState(runner=engine, served_name=served_name, api_key=api_key, created=started,
                                            task=task)  # fmt: skip
    # Chat histories are small; a multi-megabyte body is a mistake, answered with a 413 JSON error.
    app.config["MAX_CONTENT_LENGTH"] = 32 * 1024 * 1024
    app.before_request(_refuse_while_draining)
    app.before_request(_authenticate)
    app.after_request(_log_request)
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(ValidationError, _validation_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    app.register_blueprint(api)
    return app


# ----------------------------------------------------------------------------- auth and request log


def _refuse_while_draining() -> Response | None:
    g.started = time.monotonic()
    g.streaming = False
    if request.environ.get(ADMITTED, True) or request.path in DRAIN_OPEN_PATHS:
        return None
    if request.path == "/health":  # in /health's own shape: load balancers stop sending here
        response = json_response({"status": "draining", "model": current_state().served_name}, 503)
        response.headers["Retry-After"] = str(DRAIN_RETRY_AFTER_S)
        return response
    return _api_error(ApiError(503, "the server is shutting down: it finishes the requests it has and takes no new "
                                    "ones; retry shortly", error_type="server_error", code="shutting_down",
                               retry_after=DRAIN_RETRY_AFTER_S))  # fmt: skip


def _authenticate() -> Response | None:
    api_key = current_state().api_key
    if api_key is None or request.path in OPEN_PATHS:
        return None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    # Anthropic's clients send the key as x-api-key; it is checked the same way.
    sent = token.strip() if scheme.lower() == "bearer" else request.headers.get("x-api-key", "").strip()
    if not hmac.compare_digest(sent.encode(), api_key.encode()):
        # In the surface's own shape, so SDKs show the message.
        return _api_error(ApiError(401, "missing or wrong API key: send Authorization: Bearer <key> (or x-api-key)",
                                   error_type="authentication_error", code="invalid_api_key"))  # fmt: skip
    return None


def _log_request(response: Response) -> Response:
    # A stream logs itself when its body ends (streaming.py); the request context is gone by then.
    if not g.get("streaming"):
        _record(response.status_code)
    return response


def _record(status: int) -> None:
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    seconds = time.monotonic() - g.get("started", time.monotonic())
    state = current_state()
    state.runner.metrics.count_request(route, status)
    if request.method == "POST":  # the generation routes: what the dashboard's request table lists
        state.recent.add(method=request.method, route=route, model=state.served_name, status=status, stream=False,
                         duration_s=seconds, prompt_tokens=g.get("prompt_tokens"),
                         completion_tokens=g.get("completion_tokens"), cached_tokens=g.get("cached_tokens"),
                         client=request.remote_addr)  # fmt: skip
    tokens = ""
    if g.get("prompt_tokens") is not None:
        tokens = (f" prompt_tokens={g.prompt_tokens} completion_tokens={g.completion_tokens}"
                  f" cached_tokens={g.cached_tokens}")  # fmt: skip
    who = "".join(f" {key}={g.get(key)!r}" for key in ("user", "metadata") if g.get(key) is not None)
    level = logging.DEBUG if request.path in POLLED_PATHS and status < 400 else logging.INFO
    log.log(level, "%s %s -> %d%s %.3fs%s", request.method, request.path, status, tokens, seconds, who)


# ----------------------------------------------------------------------------- errors


def _shaped(err: ApiError) -> dict[str, Any]:
    """The error body in the shape of the surface the request was for: Anthropic's under
    /v1/messages, OpenAI's everywhere else (the Responses API uses OpenAI's too)."""
    if request.path.startswith("/v1/messages"):
        return anthropic.error_body(err.status, err.message)
    return err.body()


def _api_error(err: ApiError) -> Response:
    response = json_response(_shaped(err), err.status)
    if err.retry_after is not None:
        response.headers["Retry-After"] = str(err.retry_after)
    return response


def _validation_error(err: ValidationError) -> Response:
    # protocol.py translates its own validations with the route's wording; this catches any other.
    return _api_error(api_error_from_validation(err))


def _http_error(err: HTTPException) -> Response:
    code = err.code or 500
    # Flask adds HEAD and OPTIONS to every rule; naming them would only confuse.
    allowed = sorted(set(err.valid_methods or []) - {"HEAD", "OPTIONS"}) if isinstance(err, MethodNotAllowed) else []
    if code == 404:
        message = f"no route {request.path}; routes: {ROUTES_HELP}"
    elif allowed:
        message = f"{request.method} is not allowed on {request.path}; use {', '.join(allowed)}"
    else:
        message = err.description or err.name
    kind = "invalid_request_error" if code < 500 else "server_error"
    response = _api_error(ApiError(code, message, error_type=kind))
    if allowed:
        response.headers["Allow"] = ", ".join(allowed)
    return response


def _unexpected(err: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.path)
    return _api_error(ApiError(500, f"internal error: {type(err).__name__}: {err}", error_type="server_error"))
