"""Flask routes: translate HTTP to :class:`GenerationRequest` and results back to the wire shapes.

No route touches the model or the tokenizer; they validate (protocol.py), hand the request to the
engine and wait. Every error, including unexpected ones, leaves as a JSON body.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.wsgi import ClosingIterator

from backends.flask_server import protocol
from backends.flask_server.engine import (
    Completion,
    Engine,
    StreamDelta,
    StreamFailed,
    StreamFinished,
    StreamStarted,
)
from backends.flask_server.metrics import Metrics
from backends.flask_server.protocol import ApiError, GenerationRequest

log = logging.getLogger("modelserve.flask_server")

OPEN_PATHS = frozenset({"/health"})


class InFlight:
    """WSGI middleware counting requests whose response body has not been closed yet.

    Shutdown waits (bounded) for this to reach 0, so requests the engine has just failed with 503
    still get their answer written instead of a reset connection. A stream counts until its body ends.
    """

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self._wsgi_app = wsgi_app
        self._lock = threading.Lock()
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    def _add(self, delta: int) -> None:
        with self._lock:
            self._count += delta

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        self._add(1)
        try:
            body = self._wsgi_app(environ, start_response)
        except BaseException:
            self._add(-1)
            raise
        return ClosingIterator(body, [lambda: self._add(-1)])


def create_app(engine: Engine, *, served_name: str, api_key: str | None = None, created: int | None = None) -> Flask:
    """The Flask app; ``app.extensions["modelserve.inflight"]`` is its :class:`InFlight` counter."""
    app = Flask(__name__)
    inflight = InFlight(app.wsgi_app)
    app.wsgi_app = inflight  # type: ignore[method-assign]
    app.extensions["modelserve.inflight"] = inflight
    # Chat histories are small; a multi-megabyte body is a mistake, answered with a 413 JSON error.
    app.config["MAX_CONTENT_LENGTH"] = 32 * 1024 * 1024
    started = int(created if created is not None else time.time())
    metrics = engine.metrics
    limit = engine.limit

    # json.dumps keeps keys in the order built here (Flask's jsonify would sort them).
    def json_response(body: Any, status: int = 200) -> Response:
        return Response(json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json")

    # -- cross-cutting: auth, logging, errors ----------------------------------------------------

    @app.before_request
    def _authenticate() -> Response | None:
        g.started = time.monotonic()
        g.streaming = False
        if api_key is None or request.path in OPEN_PATHS:
            return None
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            # Same shape as OpenAI's 401 so SDKs show the message.
            err = ApiError(
                401, "missing or wrong API key: send Authorization: Bearer <key>", error_type="authentication_error"
            )
            return json_response(err.body(), 401)
        return None

    @app.after_request
    def _log_request(response: Response) -> Response:
        if not g.get("streaming"):
            _record(response.status_code)
        return response

    def _record(status: int) -> None:
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        seconds = time.monotonic() - g.get("started", time.monotonic())
        metrics.count_request(route, status)
        tokens = ""
        if g.get("prompt_tokens") is not None:
            tokens = f" prompt_tokens={g.prompt_tokens} completion_tokens={g.completion_tokens}"
        log.info("%s %s -> %d%s %.3fs", request.method, request.path, status, tokens, seconds)

    @app.errorhandler(ApiError)
    def _api_error(err: ApiError) -> Response:
        return json_response(err.body(), err.status)

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> Response:
        code = err.code or 500
        # Flask adds HEAD and OPTIONS to every rule; naming them would only confuse.
        allowed = (
            sorted(set(err.valid_methods or []) - {"HEAD", "OPTIONS"}) if isinstance(err, MethodNotAllowed) else []
        )
        if code == 404:
            message = (
                f"no route {request.path}; routes: POST /llm/, POST /v1/chat/completions, POST /v1/completions, "
                "GET /v1/models, GET /health, GET /metrics"
            )
        elif allowed:
            message = f"{request.method} is not allowed on {request.path}; use {', '.join(allowed)}"
        else:
            message = err.description or err.name
        kind = "invalid_request_error" if code < 500 else "server_error"
        response = json_response({"error": {"message": message, "type": kind, "code": code}}, code)
        if allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.path)
        body = {
            "error": {"message": f"internal error: {type(err).__name__}: {err}", "type": "server_error", "code": 500}
        }
        return json_response(body, 500)

    # -- plain routes ----------------------------------------------------------------------------

    @app.get("/health")
    def health() -> Response:
        if not engine.alive():
            return json_response({"status": "unavailable", "model": served_name}, 503)
        return json_response({"status": "ok", "model": served_name})

    @app.get("/v1/models")
    def models() -> Response:
        card = {"id": served_name, "object": "model", "created": started, "owned_by": "modelserve"}
        return json_response({"object": "list", "data": [card]})

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.render(), mimetype="text/plain; version=0.0.4; charset=utf-8")

    # -- generation --------------------------------------------------------------------------------

    def complete(req: GenerationRequest) -> Completion:
        result = engine.submit(req).result()
        g.prompt_tokens, g.completion_tokens = result.prompt_tokens, result.completion_tokens
        return result

    @app.post("/llm/")
    def llm() -> Response:
        body = protocol.parse_json_object(request.get_data())
        req = protocol.parse_llm_request(body, limit=limit, defaults=engine.defaults)
        result = complete(req)
        usage = _usage(result)
        # AgentScope's post_api_chat envelope (reference §1.2), with honest token counts.
        return json_response(
            {
                "data": {
                    "completion_tokens": result.completion_tokens,
                    "messages": {},
                    "prompt_tokens": result.prompt_tokens,
                    "response": {
                        "choices": [{"message": {"role": "assistant", "content": result.text}}],
                        "created": int(time.time()),
                        "id": f"llm-{uuid.uuid4().hex}",
                        "model": served_name,
                        "object": "text_completion",
                        "usage": usage,
                    },
                    "total_tokens": usage["total_tokens"],
                    "username": "",
                }
            }
        )

    @app.post("/v1/chat/completions")
    def chat_completions() -> Response:
        body = protocol.parse_json_object(request.get_data())
        req = protocol.parse_chat_request(body, served_name=served_name, limit=limit)
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        if req.stream:
            return stream(req, rid, chat=True)
        result = complete(req)
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": result.text},
            "logprobs": None,
            "finish_reason": result.finish_reason,
        }
        return json_response(
            {
                "id": rid,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": served_name,
                "choices": [choice],
                "usage": _usage(result),
            }
        )

    @app.post("/v1/completions")
    def completions() -> Response:
        body = protocol.parse_json_object(request.get_data())
        req = protocol.parse_completion_request(body, served_name=served_name, limit=limit)
        rid = f"cmpl-{uuid.uuid4().hex}"
        if req.stream:
            return stream(req, rid, chat=False)
        result = complete(req)
        choice = {"index": 0, "text": result.text, "logprobs": None, "finish_reason": result.finish_reason}
        return json_response(
            {
                "id": rid,
                "object": "text_completion",
                "created": int(time.time()),
                "model": served_name,
                "choices": [choice],
                "usage": _usage(result),
            }
        )

    def stream(req: GenerationRequest, rid: str, *, chat: bool) -> Response:
        handle = engine.submit_stream(req)
        # Wait until the scheduler has tokenised the prompt: a prompt that does not fit is still a
        # proper 400 here, before any 200 header is sent.
        first = handle.next_event()
        if isinstance(first, StreamFailed):
            raise first.error
        created = int(time.time())
        g.streaming = True
        ctx = _StreamLog(
            route=request.url_rule.rule if request.url_rule else request.path,
            method=request.method,
            path=request.path,
            started=g.started,
        )

        def chunk(delta: str | None, finish: str | None, *, role: bool = False) -> str:
            if chat:
                content: dict[str, str] = {"role": "assistant", "content": ""} if role else {}
                if delta is not None:
                    content["content"] = delta
                choice: dict[str, Any] = {"index": 0, "delta": content, "logprobs": None, "finish_reason": finish}
                obj = "chat.completion.chunk"
            else:
                choice = {"index": 0, "text": delta or "", "logprobs": None, "finish_reason": finish}
                obj = "text_completion"
            return _sse({"id": rid, "object": obj, "created": created, "model": served_name, "choices": [choice]})

        def events() -> Iterator[str]:
            prompt_tokens = first.prompt_tokens if isinstance(first, StreamStarted) else 0
            completion_tokens = 0
            status = 200
            try:
                if chat:
                    yield chunk(None, None, role=True)
                while True:
                    event = handle.next_event()
                    if isinstance(event, StreamDelta):
                        yield chunk(event.text, None)
                    elif isinstance(event, StreamFinished):
                        completion_tokens = event.completion_tokens
                        yield chunk(None if chat else "", event.finish_reason)
                        if req.include_usage:
                            usage = {
                                "prompt_tokens": event.prompt_tokens,
                                "completion_tokens": event.completion_tokens,
                                "total_tokens": event.prompt_tokens + event.completion_tokens,
                            }
                            obj = "chat.completion.chunk" if chat else "text_completion"
                            yield _sse(
                                {
                                    "id": rid,
                                    "object": obj,
                                    "created": created,
                                    "model": served_name,
                                    "choices": [],
                                    "usage": usage,
                                }
                            )
                        break
                    elif isinstance(event, StreamFailed):
                        # Headers are gone already; vLLM reports a late failure as an error event.
                        status = event.error.status
                        yield _sse(event.error.body())
                        break
                yield "data: [DONE]\n\n"
            except GeneratorExit:
                status = 499  # nginx's "client closed request"
                raise
            finally:
                # Runs on normal end and when werkzeug closes us after a failed write (client gone).
                handle.cancel()
                ctx.finish(metrics, status, prompt_tokens, completion_tokens)

        return Response(
            events(),
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return app


class _StreamLog:
    """Logs a streamed request when its body ends (the request context is gone by then)."""

    def __init__(self, *, route: str, method: str, path: str, started: float) -> None:
        self.route, self.method, self.path, self.started = route, method, path, started

    def finish(self, metrics: Metrics, status: int, prompt_tokens: int, completion_tokens: int) -> None:
        metrics.count_request(self.route, status)
        log.info(
            "%s %s -> %d (stream) prompt_tokens=%d completion_tokens=%d %.3fs",
            self.method,
            self.path,
            status,
            prompt_tokens,
            completion_tokens,
            time.monotonic() - self.started,
        )


def _usage(result: Completion) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


def _sse(obj: Any) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"
