"""The playground's requests: the page builds an OpenAI request (and shows it, raw), the dashboard
sends it unchanged to the deployment's own OpenAI route with the deployment's key, and passes the
answer back as it comes (a stream chunk by chunk). A fleet's request goes through its gateway,
``model`` naming the member."""

from __future__ import annotations

import json

import aiohttp
from aiohttp import web

from launcher.store import records

READ_TIMEOUT = 600.0  # seconds of silence from the deployment before the request fails
BODY_LIMIT = 1024 * 1024
PASS_HEADERS = ("content-type", "cache-control")


def refuse(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "code": "playground"}}, status=status)


async def relay(request: web.Request, session: aiohttp.ClientSession, record: records.DeploymentRecord,
                route: str) -> web.StreamResponse:  # fmt: skip
    """POST the page's body to ``OPENAI_BASE/route`` of ``record`` and pass the answer back."""
    base = record.endpoints.get("openai")
    if not base:
        return refuse(400, f"{record.name} has no OpenAI route to try ({', '.join(record.endpoints) or 'none'})")
    raw = await request.content.read(BODY_LIMIT + 1)
    if len(raw) > BODY_LIMIT:
        return refuse(413, f"the request is over {BODY_LIMIT // 1024} KiB")
    try:
        body = json.loads(raw)
    except ValueError:
        return refuse(400, "the body is not valid JSON")
    if not isinstance(body, dict):
        return refuse(400, "the body must be a JSON object (an OpenAI request)")
    headers = {"Content-Type": "application/json"}
    if record.api_key:
        headers["Authorization"] = f"Bearer {record.api_key}"
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=READ_TIMEOUT)
    try:
        async with session.post(f"{base.rstrip('/')}/{route}", data=raw, headers=headers, timeout=timeout) as up:
            out_headers = {k: v for k, v in up.headers.items() if k.lower() in PASS_HEADERS}
            if not up.headers.get("Content-Type", "").startswith("text/event-stream"):
                return web.Response(body=await up.read(), status=up.status, headers=out_headers)
            response = web.StreamResponse(status=up.status, headers=out_headers)
            await response.prepare(request)
            try:
                async for chunk in up.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except (aiohttp.ClientError, ConnectionResetError):
                pass  # either side went away mid-stream: leaving closes the other
            return response
    except (aiohttp.ClientError, TimeoutError) as exc:
        return refuse(502, f"{record.name} did not answer: {type(exc).__name__}: {exc}")
