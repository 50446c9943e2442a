"""``python -m launcher.front --host H --port P --upstream URL --translate messages,responses [--no-tools] ...``.

The API key (the deployment's, when it has one) comes from $MODELSERVE_API_KEY, never argv: the
front checks it on the routes it translates (Bearer or x-api-key) and sends it to the engine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

from aiohttp import web

from launcher.front.app import create_app
from launcher.front.shared import FrontConfig

API_KEY_ENV = "MODELSERVE_API_KEY"
log = logging.getLogger("modelserve.front")


async def serve(config: FrontConfig, host: str, port: int) -> None:
    # handler_cancellation: a client that goes away cancels its handler, which closes the
    # engine request, which the engine notices and stops generating.
    runner = web.AppRunner(create_app(config), handler_cancellation=True, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=1024).start()
    log.info("front on http://%s:%d for %s: translating %s", host, port, config.upstream, ", ".join(config.translate))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    with contextlib.suppress(Exception):
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m launcher.front", description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the engine's base URL (without /v1)")
    parser.add_argument("--translate", required=True, help="comma-separated: messages, count_tokens, responses")
    parser.add_argument("--no-tools", action="store_true", help="the engine has no tool calling")
    parser.add_argument("--no-structured-output", action="store_true", help="the engine cannot hold replies to a schema")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = FrontConfig(upstream=args.upstream.rstrip("/"), translate=tuple(args.translate.split(",")),
                         api_key=os.environ.get(API_KEY_ENV) or None, tools=not args.no_tools,
                         structured_output=not args.no_structured_output)  # fmt: skip
    asyncio.run(serve(config, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
