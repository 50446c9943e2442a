"""The dashboard's HTTP side (aiohttp): the page, one SSE stream of live state, a log stream, the
actions and the playground. guard.py decides who may call what.

- ``GET /`` the page (static/index.html with this process's CSRF token); ``/static/...`` its files.
- ``GET /api/state`` everything the page renders, once; ``GET /api/events`` the same as SSE: a
  ``snapshot`` first, then one ``tick`` per collector tick (new chart points, cards, requests).
- ``GET /api/logs/NAME?process=ROLE&lines=N`` SSE of a deployment's log lines, following.
- ``GET /api/config/NAME?format=F[&member=ID]`` an agent config, keys left out.
- ``POST /api/deployments/NAME/stop|restart``, ``POST /api/fleets/FLEET/members/MEMBER/load|unload``.
- ``POST /api/playground/NAME/chat|embeddings`` an OpenAI request to the deployment, answered as it comes.
- ``GET /health`` open, for a load balancer.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from launcher.agents.format_names import FORMATS
from launcher.store import records
from launcher.ui import actions, guard, logview, relay
from launcher.ui.collector import Collector

STATIC = Path(str(resources.files("launcher.ui") / "static"))
GUARD: web.AppKey[guard.Guard] = web.AppKey("guard", guard.Guard)
COLLECTOR: web.AppKey[Collector] = web.AppKey("collector", Collector)
SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)
OWN_KEY: web.AppKey[str] = web.AppKey("own_key", str)
HEARTBEAT_S = 15.0  # an SSE comment this often keeps proxies from closing a quiet stream
LOG_LINES = 200


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def _open_sse(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})  # fmt: skip
    await response.prepare(request)
    return response


def _secrets(request: web.Request) -> set[str]:
    own = request.app[OWN_KEY]
    return request.app[COLLECTOR].secrets | ({own} if own else set())


# ---- the page --------------------------------------------------------------------------------


def login_page(message: str) -> web.Response:
    text = (STATIC / "login.html").read_text().replace("{{message}}", html.escape(message))
    return web.Response(text=text, content_type="text/html", headers={"Cache-Control": "no-store"})


async def index(request: web.Request) -> web.Response:
    text = (STATIC / "index.html").read_text().replace("{{csrf_token}}", request.app[GUARD].csrf_token)
    return web.Response(text=text, content_type="text/html", headers={"Cache-Control": "no-store"})


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def state(request: web.Request) -> web.Response:
    return web.json_response({**request.app[COLLECTOR].snapshot(), "formats": list(FORMATS)})


async def events(request: web.Request) -> web.StreamResponse:
    collector = request.app[COLLECTOR]
    response = await _open_sse(request)
    queue = collector.subscribe()
    try:
        await response.write(_sse("snapshot", {**collector.snapshot(), "formats": list(FORMATS)}))
        while True:
            try:
                update = await asyncio.wait_for(queue.get(), HEARTBEAT_S)
            except TimeoutError:
                await response.write(b": heartbeat\n\n")
                continue
            if update["type"] == "lagging":  # this page fell behind: it reconnects for a fresh snapshot
                break
            await response.write(_sse("tick", update))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        collector.unsubscribe(queue)
    return response


async def logs(request: web.Request) -> web.StreamResponse:
    record = _record(request)
    role = request.query.get("process") or (record.processes[-1].role if record.processes else "")
    path = next((Path(p.log) for p in record.processes if p.role == role), None)
    if path is None:
        raise _error(404, f"{record.name} has no process {role!r}; its processes: "
                          f"{', '.join(p.role for p in record.processes) or 'none'}")  # fmt: skip
    lines = request.query.get("lines", str(LOG_LINES))
    count = int(lines) if lines.isdigit() else LOG_LINES
    response = await _open_sse(request)
    await response.write(_sse("source", {"name": record.name, "process": role, "path": str(path)}))
    redact = logview.redactor(lambda: _secrets(request))
    with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
        async for batch in logview.follow(path, lines=min(count, 5000), redact=redact):
            await response.write(_sse("lines", batch))
    return response


# ---- actions ---------------------------------------------------------------------------------


def _error(status: int, message: str) -> web.HTTPException:
    body = json.dumps({"error": {"message": message, "code": "not_found" if status == 404 else "refused"}})
    kinds: dict[int, type[web.HTTPException]] = {400: web.HTTPBadRequest, 404: web.HTTPNotFound, 409: web.HTTPConflict}
    return kinds[status](text=body, content_type="application/json")


def _record(request: web.Request) -> records.DeploymentRecord:
    name = request.match_info["name"]
    record = request.app[COLLECTOR].records.get(name)
    if record is None:  # not seen yet by a tick: ask the store (still never the dashboard itself)
        with contextlib.suppress(Exception):
            record = records.load(name)
        if record is not None and record.name == request.app[COLLECTOR].own_name:
            record = None
    if record is None:
        raise _error(404, f"no deployment named {name!r}")
    return record


async def stop(request: web.Request) -> web.Response:
    record = _record(request)
    if record.fleet:
        raise _error(409, f"{record.name} belongs to fleet {record.fleet}: unload it instead")
    return (await actions.stop(record.name)).response()


async def restart(request: web.Request) -> web.Response:
    record = _record(request)
    return (await actions.restart(record.name)).response()


async def member_action(request: web.Request) -> web.Response:
    fleet = _record(request)
    member, verb = request.match_info["member"], request.match_info["verb"]
    if not fleet.members:
        raise _error(400, f"{fleet.name} is not a fleet")
    return (await actions.member(request.app[SESSION], fleet, member, verb)).response()


async def config(request: web.Request) -> web.Response:
    record = _record(request)
    fmt = request.query.get("format", "")
    outcome = await actions.config_text(record.name, fmt, request.query.get("member"), _secrets(request))
    return outcome.response()


async def playground(request: web.Request) -> web.StreamResponse:
    record = _record(request)
    route = {"chat": "chat/completions", "embeddings": "embeddings"}[request.match_info["kind"]]
    return await relay.relay(request, request.app[SESSION], record, route)


# ---- the app ---------------------------------------------------------------------------------


def create_app(*, guard_: guard.Guard, collector: Collector, own_key: str | None = None) -> web.Application:
    app = web.Application(middlewares=[guard.middleware(guard_, login_page)], client_max_size=2 * 1024 * 1024)
    app[GUARD], app[COLLECTOR], app[SESSION], app[OWN_KEY] = guard_, collector, collector.session, own_key or ""

    async def login(request: web.Request) -> web.Response:
        return await guard.login(request, guard_, login_page)

    app.router.add_get("/", index)
    app.router.add_post("/login", login)
    app.router.add_get("/health", health)
    app.router.add_static("/static/", STATIC, append_version=False)
    app.router.add_get("/api/state", state)
    app.router.add_get("/api/events", events)
    app.router.add_get("/api/logs/{name}", logs)
    app.router.add_get("/api/config/{name}", config)
    app.router.add_post("/api/deployments/{name}/stop", stop)
    app.router.add_post("/api/deployments/{name}/restart", restart)
    app.router.add_post("/api/fleets/{name}/members/{member}/{verb:load|unload}", member_action)
    app.router.add_post("/api/playground/{name}/{kind:chat|embeddings}", playground)
    return app
