"""The gateway process: ``python -m launcher.gateway PLAN.json`` (started by `modelserve up -c
FLEET.yaml` or `modelserve run -c FLEET.yaml`, never by hand).

It adopts members whose servers still run (a restarted gateway finds its fleet intact), serves,
preloads the members marked so, runs upkeep every second (idle TTL, members that died), and on
SIGTERM/SIGINT stops every member before it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import resource
import signal
import sys
from pathlib import Path

from aiohttp import web

from launcher.gateway.app import create_app
from launcher.gateway.members import CommandStarter
from launcher.gateway.metrics import Metrics
from launcher.gateway.plan import GatewayPlan
from launcher.gateway.pool import Pool

TICK = 1.0  # seconds between upkeep rounds
log = logging.getLogger("modelserve.gateway")


async def serve(plan: GatewayPlan, *, tick: float = TICK) -> None:
    raise_fd_limit()
    metrics = Metrics()
    metrics.declare([m.name for m in plan.members])
    pool = Pool(plan.members, plan.policy, CommandStarter(), metrics)
    pool.adopt()
    # handler_cancellation: a client that disconnects cancels its handler, which closes the
    # upstream request, which the member notices and stops generating.
    # keepalive_timeout: since aiohttp 3.14.4 its clock also runs from the moment a connection opens,
    # so a client that sends no request, or trickles its headers, is closed after header_timeout
    # like an idle keep-alive one (left at aiohttp's default, 3,630 s, they held a socket each for an hour).
    runner = web.AppRunner(create_app(plan, pool, metrics), handler_cancellation=True, access_log=None,
                           keepalive_timeout=plan.header_timeout)
    await runner.setup()
    await web.TCPSite(runner, plan.host, plan.port, backlog=1024).start()
    log.info("gateway %s on http://%s:%d: %s", plan.name, plan.host, plan.port,
             ", ".join(m.model_id for m in plan.members))  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    preload = loop.create_task(pool.preload())
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick)
            if not stop.is_set():
                try:
                    await pool.tick()
                except Exception:  # upkeep must not end the gateway
                    log.exception("upkeep failed")
    finally:
        log.info("stopping: members first")
        preload.cancel()
        await runner.shutdown()
        await pool.shutdown()
        await runner.cleanup()
    log.info("stopped")


def raise_fd_limit() -> None:
    """Every connection is a descriptor, and the soft limit is often 1,024: lift it to the hard one,
    as servers do (asyncio uses epoll, so descriptors past 1,024 are fine)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m launcher.gateway", description=__doc__.splitlines()[0])
    parser.add_argument("plan", type=Path)
    parser.add_argument("--tick", type=float, default=TICK, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(serve(GatewayPlan.read(args.plan), tick=args.tick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
