"""The gateway's HTTP side in one process: a real aiohttp gateway in front of a small aiohttp
upstream (a member the gateway does not start: ``external_url``). Routing, the model rewrite,
streaming through, auth, OpenAI-shaped errors (checked against OpenAI's published schemas),
429 with Retry-After when a member's queue is full, and /metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from launcher.core.fleet_spec import Policy
from launcher.gateway.app import create_app
from launcher.gateway.members import CommandStarter
from launcher.gateway.metrics import Metrics
from launcher.gateway.plan import GatewayPlan, MemberPlan
from launcher.gateway.pool import Pool
from tests import anthropic_types
from tests.openai_schema import problems


class Upstream:
    """Answers chat completions, echoing the model it was asked for; holds requests at ``gate``."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.seen: list[dict[str, Any]] = []

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.seen.append({"body": body, "auth": request.headers.get("Authorization")})
        await self.gate.wait()
        if body.get("stream"):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for i in range(3):
                chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": body["model"],
                         "choices": [{"index": 0, "delta": {"content": f"t{i}"}, "finish_reason": None}]}  # fmt: skip
                await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await resp.write(b"data: [DONE]\n\n")
            return resp
        return web.json_response({"id": "c", "object": "chat.completion", "created": 1, "model": body["model"],
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi", "refusal": None},
                                               "logprobs": None, "finish_reason": "stop"}]})  # fmt: skip

    async def surface(self, request: web.Request) -> web.Response:
        """/v1/messages and /v1/responses as a member serves them: what arrived comes back."""
        body = await request.json()
        self.seen.append({"path": request.path, "body": body, "auth": request.headers.get("Authorization"),
                          "anthropic-version": request.headers.get("anthropic-version")})  # fmt: skip
        return web.json_response({"model": body["model"]})

    async def llm(self, request: web.Request) -> web.Response:
        return web.json_response({"data": {"response": {"choices": [{"message": {"content": "posted"}}]}}})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/llm/", self.llm)
        for path in ("/v1/messages", "/v1/messages/count_tokens", "/v1/responses"):
            app.router.add_post(path, self.surface)
        return app


def gateway_test(body: Callable[[aiohttp.ClientSession, str, Upstream], Coroutine[Any, Any, None]], *,
                 api_key: str | None = None, **rules: Any) -> None:  # fmt: skip
    async def main() -> None:
        upstream = Upstream()
        async with TestServer(upstream.app()) as up_server:
            url = str(up_server.make_url("")).rstrip("/")
            members = [MemberPlan(name="a", deployment="t.a", model_id="alpha", external_url=url,
                                  external_model="upstream-name", post_path="/llm/", api_key="member-key"),
                       MemberPlan(name="b", deployment="t.b", model_id="beta", external_url=url)]  # fmt: skip
            plan = GatewayPlan(name="t", port=1, api_key=api_key, policy=Policy(**rules), members=members)
            metrics = Metrics()
            pool = Pool(members, plan.policy, CommandStarter(), metrics)
            async with TestServer(create_app(plan, pool, metrics)) as gw, aiohttp.ClientSession() as client:
                await body(client, str(gw.make_url("")).rstrip("/"), upstream)

    asyncio.run(asyncio.wait_for(main(), 30))


async def post(client: aiohttp.ClientSession, url: str, body: Any, **kw: Any) -> tuple[int, Any, Any]:
    async with client.post(url, json=body, **kw) as r:
        return r.status, await r.json(), r.headers


CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def test_routing_rewrites_model_and_swaps_the_key() -> None:
    async def body(client: aiohttp.ClientSession, base: str, up: Upstream) -> None:
        status, answer, _ = await post(client, f"{base}/v1/chat/completions", {"model": "alpha", **CHAT},
                                       headers={"Authorization": "Bearer client-key"})  # fmt: skip
        assert status == 200 and problems("chat", answer) == []
        assert up.seen[-1] == {"body": {"model": "upstream-name", **CHAT}, "auth": "Bearer member-key"}
        status, answer, _ = await post(client, f"{base}/v1/chat/completions", {"model": "b", **CHAT})  # by name too
        assert status == 200 and up.seen[-1]["body"]["model"] == "beta" and up.seen[-1]["auth"] is None
        async with client.get(f"{base}/v1/models") as r:
            listed = await r.json()
        assert problems("models", listed) == [] and [m["id"] for m in listed["data"]] == ["alpha", "beta"]
        status, answer, _ = await post(client, f"{base}/llm/a/", CHAT)
        assert status == 200 and answer["data"]["response"]["choices"][0]["message"]["content"] == "posted"

    gateway_test(body)


def test_streams_pass_through_chunk_by_chunk() -> None:
    async def body(client: aiohttp.ClientSession, base: str, up: Upstream) -> None:
        async with client.post(f"{base}/v1/chat/completions", json={"model": "alpha", "stream": True, **CHAT}) as r:
            assert r.headers["Content-Type"].startswith("text/event-stream")
            events = [line async for line in _lines(r.content)]
        assert events[-1] == "data: [DONE]" and len(events) == 4
        for event in events[:-1]:
            assert problems("chat_chunk", json.loads(event[6:])) == []

    gateway_test(body)


async def _lines(stream: aiohttp.StreamReader) -> AsyncIterator[str]:
    async for raw in stream:
        line = raw.decode().strip()
        if line:
            yield line


def test_errors_are_openai_shaped() -> None:
    async def body(client: aiohttp.ClientSession, base: str, up: Upstream) -> None:
        cases = [({"model": "gpt-4", **CHAT}, 404, "model_not_found"), (CHAT, 400, None), ([1, 2], 400, None)]
        for payload, code, error_code in cases:
            status, answer, _ = await post(client, f"{base}/v1/chat/completions", payload)
            assert status == code and problems("error", answer) == [], answer
            assert answer["error"]["code"] == error_code
        async with client.post(f"{base}/v1/chat/completions", data=b"{not json") as r:
            assert r.status == 400 and problems("error", await r.json()) == []
        status, answer, _ = await post(client, f"{base}/llm/b/", CHAT)
        assert status == 404 and answer["error"]["code"] == "no_post_route"
        status, answer, _ = await post(client, f"{base}/llm/zeta/", CHAT)
        assert status == 404 and answer["error"]["code"] == "model_not_found"
        assert up.seen == []  # nothing reached the member

    gateway_test(body)


def test_the_gateway_key_is_required_but_on_health() -> None:
    async def body(client: aiohttp.ClientSession, base: str, up: Upstream) -> None:
        status, answer, _ = await post(client, f"{base}/v1/chat/completions", {"model": "alpha", **CHAT})
        assert status == 401 and answer["error"]["code"] == "invalid_api_key"
        status, _, _ = await post(client, f"{base}/v1/chat/completions", {"model": "alpha", **CHAT},
                                  headers={"Authorization": "Bearer gw-key"})  # fmt: skip
        assert status == 200 and up.seen[-1]["auth"] == "Bearer member-key"
        async with client.get(f"{base}/health") as r:
            assert r.status == 200
        async with client.get(f"{base}/metrics") as r:
            assert r.status == 401

    gateway_test(body, api_key="gw-key")


def test_a_full_member_queue_answers_429_with_retry_after() -> None:
    async def body(client: aiohttp.ClientSession, base: str, up: Upstream) -> None:
        up.gate.clear()
        held = [asyncio.create_task(post(client, f"{base}/v1/chat/completions", {"model": "alpha", **CHAT}))
                for _ in range(3)]  # 2 in flight, 1 queued  # fmt: skip
        for _ in range(250):  # until the gateway itself says so (bounded: 5 s)
            async with client.get(f"{base}/fleet") as r:
                a = (await r.json())["members"][0]
            if (a["in_flight"], a["waiting"]) == (2, 1):
                break
            await asyncio.sleep(0.02)
        assert (a["in_flight"], a["waiting"]) == (2, 1)
        status, answer, headers = await post(client, f"{base}/v1/chat/completions", {"model": "alpha", **CHAT})
        assert status == 429 and int(headers["Retry-After"]) >= 1 and problems("error", answer) == []
        up.gate.set()
        assert [s for s, _, _ in await asyncio.gather(*held)] == [200, 200, 200]
        async with client.get(f"{base}/metrics") as r:
            text = await r.text()
        assert 'modelserve_gateway_rejected_total{member="a"} 1.0' in text
        assert 'modelserve_gateway_requests_total{code="200",member="a"} 3.0' in text

    gateway_test(body, max_concurrency=2, max_queue=1)


def test_messages_and_responses_route_by_model_and_anthropic_errors_keep_their_shape() -> None:
    async def body(client: aiohttp.ClientSession, base: str, up: Upstream) -> None:
        ask = {"model": "alpha", "max_tokens": 4, **CHAT}
        for path in ("/v1/messages", "/v1/messages/count_tokens", "/v1/responses"):
            status, answer, _ = await post(client, base + path, ask, headers={"x-api-key": "gw-key",
                                                                               "anthropic-version": "2023-06-01"})  # fmt: skip
            assert (status, answer) == (200, {"model": "upstream-name"}), answer
            assert up.seen[-1]["path"] == path and up.seen[-1]["auth"] == "Bearer member-key"
        assert up.seen[0]["anthropic-version"] == "2023-06-01"
        for payload, code in (({**ask, "model": "gpt-4"}, 404), ({"max_tokens": 4, **CHAT}, 400)):
            status, answer, _ = await post(client, f"{base}/v1/messages", payload, headers={"x-api-key": "gw-key"})
            assert status == code and anthropic_types.problems("error", answer) == [], answer
        status, answer, _ = await post(client, f"{base}/v1/messages", ask)
        assert status == 401 and answer["error"]["type"] == "authentication_error"
        status, answer, _ = await post(client, f"{base}/v1/responses", {**ask, "model": "gpt-4"},
                                       headers={"Authorization": "Bearer gw-key"})  # fmt: skip
        assert status == 404 and problems("error", answer) == [] and answer["error"]["code"] == "model_not_found"

    gateway_test(body, api_key="gw-key")
