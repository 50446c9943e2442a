"""Who may use the dashboard, in one process: a real aiohttp dashboard (its collector reading a
test's records) and a real client. Loopback only answers to its own Host name; a key makes every
route but /health ask for it (bearer or the login cookie); every POST needs the page's CSRF token
and, from a browser, this origin; and no key of the dashboard or of a deployment ever appears in a
page or an answer (configs come with a placeholder)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from launcher.process import ports
from launcher.store import records
from launcher.ui.app import create_app
from launcher.ui.collector import Collector
from launcher.ui.guard import Guard

UI_KEY = "ui-key-0123456789"
MEMBER_KEY = "deployment-key-abcdef"
Body = Callable[[aiohttp.ClientSession, str, Guard], Awaitable[None]]


def keyed_record() -> None:
    base = "http://127.0.0.1:9"
    records.save(records.DeploymentRecord(
        name="keyed", backend="script", api="openai", model="m", model_path=None, served_model_name="m",
        host="127.0.0.1", port=9, base_url=base, endpoints={"openai": f"{base}/v1"}, marker="x",
        started_at=time.time(), log_dir="/tmp", api_key=MEMBER_KEY, status="ready",
        client_endpoints=[{"kind": "openai_chat", "url": f"{base}/v1", "model_name": "m", "api_key": MEMBER_KEY}],
    ))  # fmt: skip


def dashboard(body: Body, *, api_key: str | None, bind: str = "127.0.0.1") -> None:
    """A dashboard as bound to ``bind`` (served on loopback here), with the collector's first tick done."""

    async def main() -> None:
        port = ports.free_port()
        guard = Guard.for_bind(bind, port, api_key)
        async with aiohttp.ClientSession() as session:
            collector = Collector(session, own_name="ui")
            await collector.tick()
            app = create_app(guard_=guard, collector=collector, own_key=api_key)
            async with TestServer(app, host="127.0.0.1", port=port), \
                    aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:  # fmt: skip
                await body(client, f"http://127.0.0.1:{port}", guard)

    asyncio.run(asyncio.wait_for(main(), 60))


async def call(client: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int, str]:
    async with client.request(method, url, allow_redirects=False, **kw) as r:
        return r.status, await r.text()


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert match, page[:300]
    return match.group(1)


def test_loopback_serves_its_own_host_names_only_and_posts_need_the_csrf_token() -> None:
    keyed_record()

    async def body(client: aiohttp.ClientSession, base: str, guard: Guard) -> None:
        status, page = await call(client, "GET", base + "/")
        assert status == 200 and "modelserve" in page
        token = csrf_of(page)
        port = base.rsplit(":", 1)[1]
        for host in (f"localhost:{port}", f"[::1]:{port}"):
            assert (await call(client, "GET", base + "/api/state", headers={"Host": host}))[0] == 200
        status, text = await call(client, "GET", base + "/api/state", headers={"Host": f"rebound.example:{port}"})
        assert status == 403 and json.loads(text)["error"]["code"] == "wrong_host"

        target = base + "/api/fleets/keyed/members/m/unload"
        status, text = await call(client, "POST", target)
        assert status == 403 and json.loads(text)["error"]["code"] == "csrf", text
        status, text = await call(client, "POST", target, headers={"X-CSRF-Token": "guessed"})
        assert status == 403 and json.loads(text)["error"]["code"] == "csrf"
        status, text = await call(client, "POST", target, headers={"X-CSRF-Token": token, "Origin": "http://evil.example"})
        assert status == 403 and json.loads(text)["error"]["code"] == "cross_site"
        status, text = await call(client, "POST", target, headers={"X-CSRF-Token": token, "Sec-Fetch-Site": "cross-site"})
        assert status == 403 and json.loads(text)["error"]["code"] == "cross_site"
        # With the token, from the page's own origin, the request is let through (and refused on its merits).
        status, text = await call(client, "POST", target, headers={"X-CSRF-Token": token, "Origin": base,
                                                                     "Sec-Fetch-Site": "same-origin"})  # fmt: skip
        assert status == 400 and "keyed is not a fleet" in text

    dashboard(body, api_key=None)


def test_a_key_guards_every_route_but_health_and_the_login_sets_a_cookie() -> None:
    async def body(client: aiohttp.ClientSession, base: str, guard: Guard) -> None:
        assert (await call(client, "GET", base + "/health"))[0] == 200
        status, page = await call(client, "GET", base + "/")
        assert status == 200 and 'action="/login"' in page and "csrf-token" not in page
        for path in ("/api/state", "/api/events", "/api/logs/keyed", "/api/config/keyed?format=openai-env"):
            status, text = await call(client, "GET", base + path)
            assert status == 401 and json.loads(text)["error"]["code"] == "invalid_api_key", path
        assert (await call(client, "GET", base + "/api/state", headers={"Authorization": f"Bearer {UI_KEY}"}))[0] == 200
        status, page = await call(client, "POST", base + "/login", data={"key": "wrong"})
        assert status == 401 and "wrong key" in page
        status, _ = await call(client, "POST", base + "/login", data={"key": UI_KEY}, headers={"Origin": "http://evil.example"})
        assert status == 403  # a login posted from another site
        async with client.post(base + "/login", data={"key": UI_KEY}, allow_redirects=False) as r:
            assert (r.status, r.headers["Location"]) == (303, "/")
            set_cookie = r.headers["Set-Cookie"]
        assert set_cookie.startswith(f"modelserve_ui={guard.session};") and UI_KEY not in set_cookie
        assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
        status, page = await call(client, "GET", base + "/")
        assert status == 200 and csrf_of(page) == guard.csrf_token

    dashboard(body, api_key=UI_KEY, bind="0.0.0.0")


def test_no_key_appears_in_any_page_or_answer() -> None:
    keyed_record()

    async def body(client: aiohttp.ClientSession, base: str, guard: Guard) -> None:
        auth = {"Authorization": f"Bearer {UI_KEY}"}
        seen = []
        for path in ("/", "/static/app.js", "/api/state", "/api/config/keyed?format=openai-env",
                     "/api/config/keyed?format=agentscope", "/api/config/nope?format=openai-env"):  # fmt: skip
            status, text = await call(client, "GET", base + path, headers=auth)
            seen.append(text)
            assert status in (200, 404), (path, status, text)
        config = json.loads(seen[3])
        assert config["ok"] and "OPENAI_API_KEY=YOUR_API_KEY" in config["message"]
        assert "modelserve config keyed -f openai-env` prints it" in config["note"]
        async with client.get(base + "/api/events", headers=auth) as r:
            seen.append((await r.content.readuntil(b"\n\n")).decode() + (await r.content.readuntil(b"\n\n")).decode())
        assert '"name":"keyed"' in seen[-1]
        for text in seen:
            assert UI_KEY not in text and MEMBER_KEY not in text

    dashboard(body, api_key=UI_KEY, bind="0.0.0.0")


def test_other_addresses_need_a_key(cli_env: dict[str, str]) -> None:
    program = subprocess.run([sys.executable, "-m", "launcher.ui", "--host", "0.0.0.0", "--port", "1"],
                             capture_output=True, text=True, timeout=60, env=cli_env)  # fmt: skip
    assert program.returncode == 2 and "refusing to serve on 0.0.0.0 without an API key" in program.stderr
    command = subprocess.run([sys.executable, "-m", "launcher.cli", "ui", "--host", "0.0.0.0", "--port", "1"],
                             capture_output=True, text=True, timeout=60, env=cli_env)  # fmt: skip
    assert command.returncode == 3, command.stderr
    assert "error: the dashboard on 0.0.0.0 would let anyone who reaches this machine stop and start models" in command.stderr
    assert "fix: give it a key (--api-key KEY, or MODELSERVE_UI_API_KEY), or keep it on 127.0.0.1" in command.stderr
    assert json.loads(subprocess.run([sys.executable, "-m", "launcher.cli", "status", "--json"], capture_output=True,
                                     text=True, timeout=60, env=cli_env).stdout)["deployments"] == []  # fmt: skip


@pytest.fixture(autouse=True)
def _no_leftovers(cleanup_deployments: None) -> None:
    """Every test here uses its own MODELSERVE_HOME; nothing it starts may outlive it."""
