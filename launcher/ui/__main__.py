"""The dashboard process: ``python -m launcher.ui --host H --port P [--name NAME]`` (started by
`modelserve ui`, never by hand). Its API key, if any, comes in ``MODELSERVE_UI_API_KEY``; an
address other than loopback without one is refused (exit 2). SIGTERM/SIGINT stop it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

import aiohttp
from aiohttp import web

from launcher.ui import KEY_ENV
from launcher.ui.app import create_app
from launcher.ui.collector import Collector
from launcher.ui.guard import Guard, is_loopback

log = logging.getLogger("modelserve.ui")
SHUTDOWN_S = 2.0  # open streams (the page's SSE) get this long before they are cut


async def serve(host: str, port: int, *, api_key: str | None, name: str | None, interval: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        collector = Collector(session, own_name=name, interval=interval)
        app = create_app(guard_=Guard.for_bind(host, port, api_key), collector=collector, own_key=api_key)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=SHUTDOWN_S)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
            log.info("dashboard on http://%s:%d/%s", host if ":" not in host else f"[{host}]", port,
                     " (API key required)" if api_key else "")  # fmt: skip
            await collector.run(stop)
        finally:
            log.info("stopping")
            await runner.cleanup()
    log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m launcher.ui", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--name", help="the dashboard's own record (not listed as a deployment)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between ticks")
    args = parser.parse_args(argv)
    api_key = os.environ.get(KEY_ENV) or None
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if not is_loopback(args.host) and not api_key:
        log.error("refusing to serve on %s without an API key: set %s, or bind 127.0.0.1", args.host, KEY_ENV)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, api_key=api_key, name=args.name, interval=args.interval))
    return 0


if __name__ == "__main__":
    sys.exit(main())
