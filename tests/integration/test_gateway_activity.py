"""The gateway's recent-requests ring (what the dashboard's request table reads): a real aiohttp
gateway in front of a small aiohttp member that reports usage the way OpenAI-compatible servers
do; the summaries carry the member's own token counts and a stream's time to first token, never
a body. The usage reader is checked on every answer shape it knows, split at any byte."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from launcher.core.fleet_spec import Policy
from launcher.gateway.activity import Activity, UsageWatch
from launcher.gateway.app import create_app
from launcher.gateway.members import CommandStarter
from launcher.gateway.metrics import Metrics
from launcher.gateway.plan import GatewayPlan, MemberPlan
from launcher.gateway.pool import Pool

USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10, "prompt_tokens_details": {"cached_tokens": 4}}
FIRST_TOKEN_DELAY = 0.2  # the member's stream sends its role chunk at once, its first text after this


def _chunk(delta: dict[str, Any], **extra: Any) -> bytes:
    body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}], **extra}  # fmt: skip
    return f"data: {json.dumps(body)}\n\n".encode()


async def chat(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    if not body.get("stream"):
        return web.json_response({"id": "c", "object": "chat.completion", "created": 1, "model": "m", "usage": USAGE,
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                                               "finish_reason": "stop"}]})  # fmt: skip
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(_chunk({"role": "assistant", "content": ""}))
    await asyncio.sleep(FIRST_TOKEN_DELAY)
    for word in ("a", "b", "c"):
        await resp.write(_chunk({"content": word}))
    usage = f"data: {json.dumps({'id': 'c', 'object': 'chat.completion.chunk', 'choices': [], 'usage': USAGE})}\n\n"
    await resp.write(usage.encode() + b"data: [DONE]\n\n")
    return resp


def test_summaries_carry_the_members_usage_and_a_streams_first_token() -> None:
    async def main() -> None:
        member = web.Application()
        member.router.add_post("/v1/chat/completions", chat)
        async with TestServer(member) as up:
            plan_m = MemberPlan(name="a", deployment="t.a", model_id="alpha", external_url=str(up.make_url("")))
            plan = GatewayPlan(name="t", port=1, api_key="gw-key", policy=Policy(), members=[plan_m])
            metrics = Metrics()
            pool = Pool([plan_m], plan.policy, CommandStarter(), metrics)
            auth = {"Authorization": "Bearer gw-key"}
            async with TestServer(create_app(plan, pool, metrics)) as gw, aiohttp.ClientSession(headers=auth) as client:
                base = str(gw.make_url("")).rstrip("/")
                secret = "a prompt nobody else should read"
                ask = {"model": "alpha", "messages": [{"role": "user", "content": secret}]}
                async with client.post(f"{base}/v1/chat/completions", json=ask) as r:
                    assert r.status == 200
                async with client.post(f"{base}/v1/chat/completions", json={**ask, "stream": True}) as r:
                    assert (await r.read()).endswith(b"data: [DONE]\n\n")
                async with client.post(f"{base}/v1/chat/completions", json={**ask, "model": "nope"}) as r:
                    assert r.status == 404
                async with client.get(f"{base}/modelserve/requests") as r:
                    page = await r.json()
                async with client.get(f"{base}/modelserve/requests?after=2") as r:
                    later = await r.json()
                async with aiohttp.ClientSession() as stranger, stranger.get(f"{base}/modelserve/requests") as r:
                    assert r.status == 401

        rows = page["requests"]
        assert [(r["id"], r["route"], r["model"], r["member"], r["status"], r["stream"]) for r in rows] == [
            (1, "/v1/chat/completions", "alpha", "a", 200, False), (2, "/v1/chat/completions", "alpha", "a", 200, True),
            (3, "/v1/chat/completions", "nope", None, 404, False)]  # fmt: skip
        for row in rows[:2]:
            assert (row["prompt_tokens"], row["completion_tokens"], row["cached_tokens"]) == (7, 3, 4)
            assert row["client"] == "127.0.0.1"
        assert rows[0]["ttft_s"] is None
        assert FIRST_TOKEN_DELAY <= rows[1]["ttft_s"] <= rows[1]["duration_s"]  # the role chunk did not count
        assert rows[2]["prompt_tokens"] is None
        assert secret not in json.dumps(page)
        assert [r["id"] for r in later["requests"]] == [3]

    asyncio.run(asyncio.wait_for(main(), 30))


def _fed(stream: bytes, cut: int) -> UsageWatch:
    watch = UsageWatch()
    watch.chunk(stream[:cut], 1.0)
    watch.chunk(stream[cut:], 2.0)
    return watch


def test_a_stream_is_read_whatever_byte_it_is_split_at() -> None:
    stream = _chunk({"role": "assistant", "content": ""}) + _chunk({"content": "x"}) + \
        f"data: {json.dumps({'choices': [], 'usage': USAGE})}\n\n".encode() + b"data: [DONE]\n\n"  # fmt: skip
    first_text_ends = len(_chunk({"role": "assistant", "content": ""})) + len(_chunk({"content": "x"})) - 1  # its newline
    for cut in range(len(stream) + 1):
        watch = _fed(stream, cut)
        assert (watch.prompt_tokens, watch.completion_tokens, watch.cached_tokens) == (7, 3, 4), cut
        assert watch.first_token_at == (1.0 if cut >= first_text_ends else 2.0), cut


def test_usage_in_every_shape_the_fleet_passes() -> None:
    anthropic = (b'event: message_start\ndata: {"type": "message_start", "message": {"usage": {"input_tokens": 9, '
                 b'"output_tokens": 1, "cache_read_input_tokens": 5}}}\n\n'
                 b'data: {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "hi"}}\n\n'
                 b'data: {"type": "message_delta", "usage": {"output_tokens": 12}}\n\n')  # fmt: skip
    watch = UsageWatch()
    watch.chunk(anthropic, 3.0)
    assert (watch.prompt_tokens, watch.completion_tokens, watch.cached_tokens, watch.first_token_at) == (9, 12, 5, 3.0)

    responses = (b'data: {"type": "response.output_text.delta", "delta": "hi"}\n\n'
                 b'data: {"type": "response.completed", "response": {"usage": {"input_tokens": 4, "output_tokens": 2, '
                 b'"input_tokens_details": {"cached_tokens": 0}}}}\n\n')  # fmt: skip
    watch = UsageWatch()
    watch.chunk(responses, 4.0)
    assert (watch.prompt_tokens, watch.completion_tokens, watch.cached_tokens, watch.first_token_at) == (4, 2, 0, 4.0)

    envelope = UsageWatch()  # AgentScope's POST /llm/
    envelope.body(json.dumps({"data": {"response": {"usage": {"prompt_tokens": 5, "completion_tokens": 6}}}}).encode())
    assert (envelope.prompt_tokens, envelope.completion_tokens, envelope.cached_tokens) == (5, 6, None)
    broken = UsageWatch()
    broken.body(b"<html>not json</html>")
    assert broken.prompt_tokens is None
    embeddings = UsageWatch()  # its "data" is a list of vectors, not the /llm/ envelope
    embeddings.body(json.dumps({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}],
                                "usage": {"prompt_tokens": 3, "total_tokens": 3}}).encode())  # fmt: skip
    assert (embeddings.prompt_tokens, embeddings.completion_tokens) == (3, None)


def test_the_ring_is_bounded() -> None:
    ring = Activity(capacity=2, clock=lambda: 5.0)
    for _ in range(3):
        ring.add(route="/v1/chat/completions", model="m", member="a", status=200, stream=False, duration_s=1.0,
                 watch=None, started=0.0, client=None)  # fmt: skip
    assert [r["id"] for r in ring.page(0)["requests"]] == [2, 3]
