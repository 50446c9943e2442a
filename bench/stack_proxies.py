"""Minimal reverse proxies for ``bench/gateway.py --compare-stacks``: the least an OpenAI gateway
must do (read the body, parse it for ``model``, send it on, pass the answer back, a stream chunk
by chunk) on two stacks, so the numbers say what the stack costs and what the gateway adds.

  asgi      uvicorn + httpx (runs in the throwaway venv under .cache/bench-stacks)
  aiohttp   aiohttp server + client, the gateway's stack without its pool, metrics and policy

    python bench/stack_proxies.py {asgi,aiohttp} --port N --upstream http://127.0.0.1:M

Each imports only its own stack, since the venv of one lacks the other.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from typing import Any

HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding", "date", "server"}
Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


def routed_model(raw: bytes) -> str:
    """What a gateway must look at: the body's ``model`` (one upstream here, so it only checks)."""
    model = json.loads(raw).get("model")
    if not isinstance(model, str):
        raise ValueError("'model' is required")
    return model


# ----------------------------------------------------------------------------- uvicorn + httpx


def asgi_app(upstream: str) -> Callable[[dict[str, Any], Receive, Send], Awaitable[None]]:
    import httpx

    # No pool limits and no timeouts: the same settings as the gateway's aiohttp connector.
    client = httpx.AsyncClient(base_url=upstream, timeout=None,
                               limits=httpx.Limits(max_connections=None, max_keepalive_connections=None))  # fmt: skip

    async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await client.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["method"] == "GET":
            await _answer(send, 200, b'{"status": "ok"}')
            return
        raw, more = b"", True
        while more:
            message = await receive()
            raw += message.get("body", b"")
            more = message.get("more_body", False)
        routed_model(raw)
        request = client.build_request("POST", scope["path"], content=raw, headers={"content-type": "application/json"})
        upstream_response = await client.send(request, stream=True)
        try:
            await _relay_httpx(upstream_response, send)
        finally:
            await upstream_response.aclose()

    return app


async def _relay_httpx(upstream_response: Any, send: Send) -> None:
    headers = [(k.encode(), v.encode()) for k, v in upstream_response.headers.items() if k.lower() not in HOP_HEADERS]
    if not upstream_response.headers.get("content-type", "").startswith("text/event-stream"):
        await _answer(send, upstream_response.status_code, await upstream_response.aread(), headers)
        return
    await send({"type": "http.response.start", "status": upstream_response.status_code, "headers": headers})
    async for piece in upstream_response.aiter_raw():
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [*(headers or [(b"content-type", b"application/json")]), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def run_asgi(port: int, upstream: str) -> None:
    import uvicorn

    # uvicorn's defaults pick uvloop and httptools when installed: the alternative at its best.
    uvicorn.run(asgi_app(upstream), host="127.0.0.1", port=port, access_log=False, log_level="warning",
                backlog=1024)  # fmt: skip


# ----------------------------------------------------------------------------- aiohttp alone


def run_aiohttp(port: int, upstream: str) -> None:
    import aiohttp
    from aiohttp import web

    client_key = web.AppKey("client", aiohttp.ClientSession)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def proxy(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        routed_model(raw)
        async with request.app[client_key].post(upstream + request.path, data=raw,
                                                headers={"Content-Type": "application/json"}) as up:  # fmt: skip
            headers = {k: v for k, v in up.headers.items() if k.lower() not in HOP_HEADERS}
            if not up.headers.get("Content-Type", "").startswith("text/event-stream"):
                return web.Response(body=await up.read(), status=up.status, headers=headers)
            response = web.StreamResponse(status=up.status, headers=headers)
            await response.prepare(request)
            async for piece in up.content.iter_any():
                await response.write(piece)
            await response.write_eof()
            return response

    async def session(app: web.Application) -> Any:
        app[client_key] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)
        yield
        await app[client_key].close()

    app = web.Application()
    app.cleanup_ctx.append(session)
    app.router.add_get("/health", health)
    app.router.add_post("/v1/{tail:.+}", proxy)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, backlog=1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack", choices=["asgi", "aiohttp"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    (run_asgi if args.stack == "asgi" else run_aiohttp)(args.port, args.upstream.rstrip("/"))


if __name__ == "__main__":
    main()
