"""The gateway's HTTP side (aiohttp server and client): one port for the whole fleet.

- ``POST /v1/...`` (and ``/rerank``) routes by the body's ``model`` to a member (starting it when cold) and passes
  the answer through, a streamed one chunk by chunk; ``model`` is rewritten to the member's own
  name for its model. A client that goes away closes the upstream request, which the member
  sees as a disconnect and cancels.
- ``POST /llm/<name>/`` goes to a member's POST route (the AgentScope ``post_api_chat`` one).
- ``GET /v1/models`` lists every member, loaded or not; ``/health``, ``/metrics`` (Prometheus),
  ``GET /fleet`` (what ``modelserve status`` shows), ``POST /fleet/load|unload/<name>``,
  ``GET /modelserve/requests`` (summaries of the last requests, for the dashboard: activity.py).
Errors are OpenAI-shaped: ``{"error": {"message", "type", "param", "code"}}``; under /v1/messages
(Anthropic Messages, routed by ``model`` like the rest) the gateway's own are Anthropic-shaped, and
the key may come as ``x-api-key``. What a member answers passes through as it came.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from launcher.gateway.activity import Activity, Passage, UsageWatch
from launcher.gateway.metrics import Metrics
from launcher.gateway.plan import GatewayPlan
from launcher.gateway.pool import Busy, MemberState, Pool, Unavailable, Upstream
from surfaces import anthropic

POOL: web.AppKey[Pool] = web.AppKey("pool", Pool)
PLAN: web.AppKey[GatewayPlan] = web.AppKey("plan", GatewayPlan)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
CLIENT: web.AppKey[aiohttp.ClientSession] = web.AppKey("client", aiohttp.ClientSession)
CREATED: web.AppKey[int] = web.AppKey("created", int)
ACTIVITY: web.AppKey[Activity] = web.AppKey("activity", Activity)
PASSAGE: web.RequestKey[Passage] = web.RequestKey("passage", Passage)  # what the ring records of a request
PASS_HEADERS = ("content-type", "accept", "anthropic-version", "anthropic-beta")
HOP_HEADERS = {"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding", "date", "server"}
READ_TIMEOUT = 600.0  # seconds of upstream silence before the request fails (a generation is slow, not silent)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, message: str, *, type_: str, code: str | None = None, param: str | None = None,
          headers: dict[str, str] | None = None, request: web.Request | None = None) -> web.Response:  # fmt: skip
    """The gateway's own refusal, in the shape of the surface ``request`` was for."""
    body: dict[str, Any] = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    if request is not None and request.path.startswith("/v1/messages"):
        body = anthropic.error_body(status, message)
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    key = request.app[PLAN].api_key
    sent = request.headers.get("Authorization") == f"Bearer {key}" or request.headers.get("x-api-key") == key
    if key and request.path != "/health" and not sent:
        return error(401, "missing or wrong API key: send 'Authorization: Bearer KEY' (or x-api-key)",
                     type_="invalid_request_error", code="invalid_api_key", request=request)  # fmt: skip
    return await handler(request)


@web.middleware
async def record_activity(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A summary of every POST the fleet answers (not the load/unload actions) in the ring."""
    if request.method != "POST" or request.path.startswith("/fleet/"):
        return await handler(request)
    started = time.monotonic()
    status = 500
    request[PASSAGE] = passage = Passage()
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = 499  # the client went away: its handler was cancelled (nginx's "client closed request")
        raise
    finally:
        request.app[ACTIVITY].add(route=request.path, model=passage.model, member=passage.member, status=status,
                                  stream=passage.stream, watch=passage.watch, started=started,
                                  duration_s=time.monotonic() - started, client=request.remote)  # fmt: skip


def _passage(request: web.Request) -> Passage:
    """The request's entry-to-be in the ring (a throwaway one outside the activity middleware)."""
    return request.get(PASSAGE) or Passage()


async def recent_requests(request: web.Request) -> web.Response:
    after = request.query.get("after", "0")
    if not after.isdigit():
        return error(400, f"after must be a request id (a whole number >= 0), not {after!r}",
                     type_="invalid_request_error", param="after")  # fmt: skip
    return web.json_response(request.app[ACTIVITY].page(int(after)))


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def models(request: web.Request) -> web.Response:
    pool = request.app[POOL]
    created = request.app[CREATED]
    data = [{"id": m.plan.model_id, "object": "model", "created": created, "owned_by": "modelserve"}
            for m in pool.members.values()]  # fmt: skip
    return web.json_response({"object": "list", "data": data})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def fleet(request: web.Request) -> web.Response:
    pool = request.app[POOL]
    now = pool.clock()
    rows = [{"name": m.plan.name, "deployment": m.plan.deployment, "model": m.plan.model_id, "state": m.state,
             "idle_seconds": round(now - m.last_used, 1) if m.state == "ready" and not m.in_flight else None,
             "in_flight": m.in_flight, "waiting": m.waiting, "requests": m.requests, "errors": m.errors,
             "loads": m.loads, "last_error": m.last_error, "url": m.upstream.base_url if m.upstream else None}
            for m in pool.members.values()]  # fmt: skip
    return web.json_response({"name": request.app[PLAN].name, "members": rows})


async def load(request: web.Request) -> web.Response:
    pool, m = request.app[POOL], _named(request)
    try:
        await pool.load(m, pool.clock() + pool.rules.start_timeout)
    except (Busy, Unavailable) as exc:
        return _refusal(request, m, exc)
    return web.json_response({"name": m.plan.name, "state": m.state})


async def unload(request: web.Request) -> web.Response:
    pool, m = request.app[POOL], _named(request)
    if not await pool.unload(m):
        return error(409, f"{m.plan.name} is {m.state} with {m.in_flight} requests in flight; not unloaded",
                     type_="invalid_request_error", code="member_busy")  # fmt: skip
    return web.json_response({"name": m.plan.name, "state": m.state})


def _named(request: web.Request) -> MemberState:
    m = request.app[POOL].by_name(request.match_info["name"])
    if m is None:
        raise web.HTTPNotFound(text=json.dumps(_unknown(request, request.match_info["name"])),
                               content_type="application/json")  # fmt: skip
    return m


def _unknown(request: web.Request, model: str) -> dict[str, Any]:
    ids = ", ".join(request.app[POOL].ids())
    return {"error": {"message": f"the model {model!r} is not in this fleet; it serves: {ids}",
                      "type": "invalid_request_error", "param": "model", "code": "model_not_found"}}  # fmt: skip


def _refusal(request: web.Request, m: MemberState, exc: Exception) -> web.Response:
    request.app[METRICS].rejected.labels(m.plan.name).inc()
    if isinstance(exc, Busy):
        code = "rate_limit_exceeded" if exc.status == 429 else "fleet_busy"
        return error(exc.status, str(exc), type_="server_error" if exc.status == 503 else "rate_limit_error",
                     code=code, headers={"Retry-After": str(max(1, round(exc.retry_after)))}, request=request)  # fmt: skip
    request.app[METRICS].errors.labels(m.plan.name).inc()
    return error(503, str(exc), type_="server_error", code="model_load_failed", headers={"Retry-After": "10"},
                 request=request)  # fmt: skip


async def openai(request: web.Request) -> web.StreamResponse:
    raw = await request.read()
    try:
        body = json.loads(raw)
    except ValueError:
        return error(400, "the body is not valid JSON", type_="invalid_request_error", request=request)
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return error(400, "'model' is required: the fleet routes by it (GET /v1/models lists them)",
                     type_="invalid_request_error", param="model", request=request)  # fmt: skip
    _passage(request).model = body["model"]
    m = request.app[POOL].lookup(body["model"])
    if m is None:
        unknown = _unknown(request, body["model"])["error"]
        return error(404, unknown["message"], type_=unknown["type"], param="model", code=unknown["code"], request=request)
    _passage(request).member = m.plan.name

    def rewrite(up: Upstream) -> bytes:
        if up.model == body["model"]:
            return raw
        return json.dumps({**body, "model": up.model}).encode()

    return await forward(request, m, request.path, rewrite)


async def post_route(request: web.Request) -> web.StreamResponse:
    m = _named(request)
    _passage(request).member, _passage(request).model = m.plan.name, m.plan.model_id
    if not m.plan.post_path:
        return error(404, f"{m.plan.name} has no POST route (its backend serves only the OpenAI API)",
                     type_="invalid_request_error", code="no_post_route")  # fmt: skip
    raw = await request.read()
    return await forward(request, m, m.plan.post_path, lambda up: raw)


async def forward(request: web.Request, m: MemberState, path: str, body_for: Callable[[Upstream], bytes]) -> web.StreamResponse:  # fmt: skip
    """Send the request to the member (loaded first) and pass its answer back as it comes. A
    refused connection means the member died: it is marked lost and the request tried once more."""
    pool = request.app[POOL]
    deadline = pool.clock() + pool.rules.start_timeout
    headers = {k: v for k, v in request.headers.items() if k.lower() in PASS_HEADERS}
    if m.plan.api_key:
        headers["Authorization"] = f"Bearer {m.plan.api_key}"
    for attempt in (1, 2):
        try:
            async with pool.use(m, deadline) as up:
                try:
                    return await _relay(request, m, up.base_url + path, body_for(up), headers)
                except NotAnswered as failed:
                    if attempt == 2:
                        raise failed.cause from None
                    dead, why = not pool.starter.alive(m.plan, up), str(failed.cause)
            # Nothing came back, so sending again is safe: to the same server when it lives (a
            # keep-alive connection it had closed), else to a fresh start of the member.
            if dead:
                await pool.lost(m, f"its server is gone ({why})")
        except (Busy, Unavailable) as exc:
            return _refusal(request, m, exc)
        except aiohttp.ClientError as exc:
            request.app[METRICS].errors.labels(m.plan.name).inc()
            return error(502, f"{m.plan.name}: {exc}", type_="server_error", code="upstream_error", request=request)
    raise AssertionError("unreachable")


class NotAnswered(Exception):
    """The member failed before sending any response: the request may be sent again."""

    def __init__(self, cause: aiohttp.ClientError) -> None:
        super().__init__(str(cause))
        self.cause = cause


async def _relay(request: web.Request, m: MemberState, url: str, data: bytes, headers: dict[str, str]) -> web.StreamResponse:  # fmt: skip
    client = request.app[CLIENT]
    try:
        upstream = await client.request(request.method, url, data=data, headers=headers, params=request.query or None)
    except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
        raise NotAnswered(exc) from None
    async with upstream:
        request.app[METRICS].requests.labels(m.plan.name, str(upstream.status)).inc()
        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS}
        _passage(request).watch = watch = UsageWatch()
        if not upstream.headers.get("Content-Type", "").startswith("text/event-stream"):
            payload = await upstream.read()
            watch.body(payload)
            return web.Response(body=payload, status=upstream.status, headers=out_headers)
        _passage(request).stream = True
        response = web.StreamResponse(status=upstream.status, headers=out_headers)
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                watch.chunk(chunk, time.monotonic())
                await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:
            pass  # the client went away: leaving this block closes the upstream request, which cancels it
        return response


async def _session(app: web.Application) -> Any:
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=READ_TIMEOUT)
    app[CLIENT] = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False)
    yield
    await app[CLIENT].close()


def create_app(plan: GatewayPlan, pool: Pool, metrics_: Metrics) -> web.Application:
    app = web.Application(middlewares=[auth, record_activity], client_max_size=64 * 1024 * 1024)
    app[PLAN], app[POOL], app[METRICS] = plan, pool, metrics_
    app[ACTIVITY] = Activity()
    app[CREATED] = int(time.time())
    app.cleanup_ctx.append(_session)
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/fleet", fleet)
    app.router.add_get("/modelserve/requests", recent_requests)
    app.router.add_post("/fleet/load/{name}", load)
    app.router.add_post("/fleet/unload/{name}", unload)
    app.router.add_post("/llm/{name}", post_route)
    app.router.add_post("/llm/{name}/", post_route)
    app.router.add_post("/v1/{tail:.+}", openai)
    app.router.add_post("/rerank", openai)  # the rerank route's short name (vLLM, llama.cpp), routed by model too
    return app
