"""The front's translated routes: a surface's request -> the shared translator -> the engine's
``/v1/chat/completions`` -> the translator -> the surface's answer or stream, errors in its shape.

The key check here covers the translated routes only (Bearer or x-api-key, as the engine would
check the Bearer one); the engine checks everything that passes through.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from launcher.front.shared import CLIENT, CONFIG, STORE, FrontConfig
from surfaces import anthropic, chat, responses, sse
from surfaces.anthropic_stream import MessagesStream
from surfaces.errors import SurfaceError
from surfaces.responses_stream import ResponsesStream

Out = list[tuple[str, dict[str, Any]]]
Shape = Callable[[int, str, "str | None"], dict[str, Any]]  # (status, message, param) -> the surface's error body


class EngineRefused(Exception):
    """The engine answered the chat request with an error: its status and body."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(chat.error_message(body, status))
        self.status = status
        self.message = chat.error_message(body, status)


class Stream(Protocol):
    def start(self) -> Out: ...
    def feed(self, raw: dict[str, Any] | str) -> Out: ...
    def finish(self) -> Out: ...
    def error(self, status: int, message: str) -> Out: ...


def anthropic_shape(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    return anthropic.error_body(status, message)  # Anthropic's errors name no field apart from the message


def openai_shape(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    return responses.error_body(status, message, param=param)


def _authorized(request: web.Request, config: FrontConfig) -> bool:
    if not config.api_key:
        return True
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    sent = token.strip() if scheme.lower() == "bearer" else request.headers.get("x-api-key", "").strip()
    return hmac.compare_digest(sent.encode(), config.api_key.encode())


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise SurfaceError(400, f"the request body is not valid JSON ({exc}); send a JSON object") from None
    if not isinstance(body, dict):
        raise SurfaceError(400, "the request body must be a JSON object")
    return body


def _headers(config: FrontConfig) -> dict[str, str]:
    return {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}


def _for_engine(req: chat.Request, config: FrontConfig, *, format_field: str = "text.format") -> dict[str, Any]:
    """The chat request, less what the engine cannot do (refused by name where it was asked for)."""
    if not config.tools:
        req = chat.without_tools(req)
    if not config.structured_output:
        req = chat.without_format(req, field=format_field)
    return req.wire()


async def _chat(request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    config = request.app[CONFIG]
    async with request.app[CLIENT].post(config.upstream + "/v1/chat/completions", json=body,
                                        headers=_headers(config)) as answer:  # fmt: skip
        payload = await answer.json(content_type=None)
        if answer.status != 200:
            raise EngineRefused(answer.status, payload)
        if not isinstance(payload, dict):
            raise EngineRefused(502, {"message": f"the engine answered {str(payload)[:200]}"})
        return payload


def _frames(events: Out) -> bytes:
    return "".join(sse.frame(data, event=name) for name, data in events).encode()


async def _stream(request: web.Request, body: dict[str, Any], stream: Stream,
                  done: Callable[[], None] | None = None) -> web.StreamResponse:  # fmt: skip
    """The engine's chat stream, translated event by event as its chunks arrive."""
    config = request.app[CONFIG]
    async with request.app[CLIENT].post(config.upstream + "/v1/chat/completions", json=body,
                                        headers=_headers(config)) as answer:  # fmt: skip
        if answer.status != 200 or not answer.headers.get("Content-Type", "").startswith("text/event-stream"):
            raise EngineRefused(answer.status if answer.status != 200 else 502, await answer.json(content_type=None))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        await response.write(_frames(stream.start()))
        failed = await _relay(answer, response, stream)
        if failed is not None:  # the 200 went out already: the surface's error event ends the stream
            await response.write(_frames(stream.error(502, failed)))
            return response
        await response.write(_frames(stream.finish()))
        if done is not None:
            done()
        await response.write_eof()
        return response


async def _relay(answer: aiohttp.ClientResponse, response: web.StreamResponse, stream: Stream) -> str | None:
    """Feed the engine's chunks to ``stream`` as they arrive; why it failed, or None at [DONE]."""
    reader = sse.Reader()
    try:
        async for chunk in answer.content.iter_any():
            for event in reader.feed(chunk):
                if event.data.strip() == "[DONE]":
                    return None
                try:
                    if '"error' in event.data and chat.is_error(obj := json.loads(event.data)):
                        return chat.error_message(obj, 502)
                    await response.write(_frames(stream.feed(event.data)))
                except ValueError:  # not JSON, or not a chunk (pydantic's ValidationError is a ValueError)
                    return f"the engine sent a chunk that is not a chat chunk: {event.data[:200]!r}"
    except aiohttp.ClientError as exc:
        return f"the engine's stream broke off: {exc}"
    return "the engine's stream ended before it finished"


def _handler(shape: Shape, serve: Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]
             ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:  # fmt: skip
    """A translated route: key, body, translation; every refusal in the surface's ``shape``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if not _authorized(request, request.app[CONFIG]):
            message = "missing or wrong API key: send Authorization: Bearer <key> (or x-api-key)"
            return web.json_response(shape(401, message, None), status=401)
        try:
            return await serve(request, await _body(request))
        except SurfaceError as err:
            return web.json_response(shape(err.status, err.message, err.param), status=err.status)
        except EngineRefused as err:
            return web.json_response(shape(err.status, err.message, None), status=err.status)
        except aiohttp.ClientError as exc:
            message = f"the engine behind this front did not answer ({exc}); see `modelserve logs NAME`"
            return web.json_response(shape(502, message, None), status=502)

    return handle


async def _messages(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    req = anthropic.parse(body)
    wire = _for_engine(anthropic.chat_request(req), request.app[CONFIG])
    if req.stream:
        return await _stream(request, wire, MessagesStream(req))
    return web.json_response(anthropic.message(await _chat(request, wire), req=req))


async def _count_tokens(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    req = anthropic.parse_count(body)
    return web.json_response(anthropic.count(await _chat(request, _for_engine(anthropic.count_request(req),
                                                                             request.app[CONFIG]))))  # fmt: skip


async def _responses(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    store = request.app[STORE]
    req = responses.parse(body)
    history: tuple[chat.Message, ...] = ()
    if req.previous_response_id is not None:
        found = store.get(req.previous_response_id)
        if found is None:
            raise responses.unknown_previous(req.previous_response_id, kept=store.describe())
        history = found
    wire = _for_engine(responses.chat_request(req, history), request.app[CONFIG])
    rid, created = responses.new_id(), int(time.time())

    def remember(output: list[dict[str, Any]]) -> None:
        if req.store is not False:
            store.put(rid, [*responses.conversation(req, history), *responses.as_history(output)])

    if req.stream:
        stream = ResponsesStream(req, rid=rid, created_at=created)
        return await _stream(request, wire, stream, done=lambda: remember(stream.output))
    answer = responses.response(await _chat(request, wire), req=req, rid=rid, created_at=created)
    remember(answer["output"])
    return web.json_response(answer)


HANDLERS = {
    "messages": _handler(anthropic_shape, _messages),
    "count_tokens": _handler(anthropic_shape, _count_tokens),
    "responses": _handler(openai_shape, _responses),
}
