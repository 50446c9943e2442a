"""The front's aiohttp app: the translated routes (``translate.py``) and a pass-through for every
other route, both to the engine behind it.

Pass-through is untouched: method, path, query, headers (less the hop-by-hop ones) and body go
to the engine, and its answer comes back as it came, a stream chunk by chunk. The routes the
engine serves itself (``/v1/chat/completions``, ``/v1/models``, ``/health``, its native surfaces)
are never parsed here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import aiohttp
from aiohttp import web

from launcher.front.shared import CLIENT, CONFIG, ROUTES, STORE, FrontConfig
from launcher.front.translate import HANDLERS
from surfaces.response_store import ResponseStore

HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive", "date", "server"})
READ_TIMEOUT = 600.0  # seconds of engine silence before a request fails (a generation is slow, not silent)

__all__ = ["FrontConfig", "create_app"]


def forwarded(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.lower() not in HOP_HEADERS}


async def passthrough(request: web.Request) -> web.StreamResponse:
    client, upstream = request.app[CLIENT], request.app[CONFIG].upstream
    body = await request.read()
    try:
        answer = await client.request(request.method, upstream + request.path_qs, data=body or None,
                                      headers=forwarded(request.headers), allow_redirects=False)  # fmt: skip
    except aiohttp.ClientError as exc:
        message = f"the engine behind this front did not answer ({exc}); see `modelserve logs NAME`"
        return web.json_response({"error": {"message": message, "type": "server_error", "param": None,
                                             "code": "engine_unreachable"}}, status=502)  # fmt: skip
    async with answer:
        headers = forwarded(answer.headers)
        # A body of known length is read whole; anything else (SSE, Ollama's NDJSON progress) streams.
        if answer.headers.get("Content-Length") is not None:
            return web.Response(body=await answer.read(), status=answer.status, headers=headers)
        response = web.StreamResponse(status=answer.status, headers=headers)
        await response.prepare(request)
        try:
            async for chunk in answer.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away: leaving this block closes the engine's request, which cancels it
        return response


async def _session(app: web.Application) -> AsyncIterator[None]:
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=READ_TIMEOUT)
    # auto_decompress off: a compressed answer passes through compressed, with its Content-Encoding.
    app[CLIENT] = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False)
    yield
    await app[CLIENT].close()


def create_app(config: FrontConfig, store: ResponseStore | None = None) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[CONFIG], app[STORE] = config, store or ResponseStore()
    app.cleanup_ctx.append(_session)
    for name in config.translate:
        if name not in ROUTES:
            raise ValueError(f"unknown surface to translate: {name!r} (known: {', '.join(ROUTES)})")
        app.router.add_post(ROUTES[name], HANDLERS[name])
    app.router.add_route("*", "/{tail:.*}", passthrough)
    return app
