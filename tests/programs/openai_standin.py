"""A fast OpenAI-compatible stand-in upstream: a latency stand-in for gateway benchmarks.

It answers like a model server that takes time but no CPU: POST /v1/chat/completions waits
--delay-ms (asyncio.sleep, the "prefill"; spread by up to --jitter-ms either way, chosen by the
request's ``seed``) and returns a valid chat.completion; with ``"stream": true`` it sends
--chunks chat.completion.chunk events --chunk-ms apart, then ``data: [DONE]``. GET /v1/models and /health answer too. Nothing is generated: the reply is
the same few words every time, so what a benchmark measures is the HTTP path in front of it.

    python tests/programs/openai_standin.py --port N [--delay-ms 20] [--jitter-ms 0] [--chunks 16] [--chunk-ms 5]

The port may also come first, bare, as for the other programs here (tests/script_backend.py's ScriptBackend).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from aiohttp import web

ARGS: web.AppKey[argparse.Namespace] = web.AppKey("args", argparse.Namespace)
GOLDEN = 0.6180339887498949  # successive multiples mod 1 cover [0, 1) evenly
WORDS = ["The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", "."]


def completion(model: str, chunks: int) -> dict[str, Any]:
    text = "".join(WORDS[i % len(WORDS)] for i in range(chunks))
    return {"id": "chatcmpl-standin", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 8, "completion_tokens": chunks, "total_tokens": 8 + chunks}}  # fmt: skip


def chunk(model: str, created: int, delta: dict[str, str], finish: str | None) -> bytes:
    event = {"id": "chatcmpl-standin", "object": "chat.completion.chunk", "created": created, "model": model,
             "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}  # fmt: skip
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def delay_ms(args: argparse.Namespace, seed: object) -> float:
    """--delay-ms, spread over +-jitter by the request's ``seed`` (a well-spread fraction of it),
    so a client that numbers its requests gets the same delays through any path in front."""
    if not args.jitter_ms or not isinstance(seed, int):
        return float(args.delay_ms)
    spread = (seed * GOLDEN) % 1.0 * 2 - 1
    return float(args.delay_ms + args.jitter_ms * spread)


async def chat(request: web.Request) -> web.StreamResponse:
    args = request.app[ARGS]
    body = await request.json()
    model = str(body.get("model", "standin"))
    # Requests translated from another surface (bench/front.py) carry their number as `user`.
    user = body.get("user")
    seed = body.get("seed", int(user) if isinstance(user, str) and user.isdigit() else None)
    await asyncio.sleep(delay_ms(args, seed) / 1000)
    if not body.get("stream"):
        return web.json_response(completion(model, args.chunks))
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    created = int(time.time())
    for i in range(args.chunks):
        if i:
            await asyncio.sleep(args.chunk_ms / 1000)
        delta = {"role": "assistant", "content": WORDS[0]} if i == 0 else {"content": WORDS[i % len(WORDS)]}
        await response.write(chunk(model, created, delta, "stop" if i == args.chunks - 1 else None))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "standin", "object": "model", "created": 0,
                                                          "owned_by": "standin"}]})  # fmt: skip


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int, nargs="?", help="the port to serve on (or --port)")
    parser.add_argument("--port", type=int, dest="port_option", metavar="PORT")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="wait before the reply (or first chunk)")
    parser.add_argument("--jitter-ms", type=float, default=0.0,
                        help="spread the delay by up to this much either way, by the request's seed")  # fmt: skip
    parser.add_argument("--chunks", type=int, default=16, help="events in a streamed reply (and its token count)")
    parser.add_argument("--chunk-ms", type=float, default=5.0, help="wait between streamed events")
    args = parser.parse_args()
    port = args.port if args.port is not None else args.port_option
    if port is None:
        parser.error("the port is required: PORT or --port PORT")
    app = web.Application()
    app[ARGS] = args
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    # No access log: a log line per request would cost more than the answer itself.
    web.run_app(app, host=args.host, port=port, access_log=None, backlog=1024,
                print=lambda _: print(f"listening on {port}", flush=True))  # fmt: skip


if __name__ == "__main__":
    main()
