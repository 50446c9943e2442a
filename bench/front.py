"""What does the translating front cost? Its overhead against a fast stand-in upstream, in one run.

The stand-in (tests/programs/openai_standin.py, as for bench/gateway.py) answers chat after
20 +- 10 ms of asyncio.sleep and streams 16 chunks 5 ms apart: a model server that takes time but
no CPU. What differs between the paths is the front alone:

  - direct:             client -> stand-in            POST /v1/chat/completions
  - front, chat:        client -> front -> stand-in   POST /v1/chat/completions (passed through)
  - front, messages:    client -> front -> stand-in   POST /v1/messages  (translated to chat and back)
  - front, responses:   client -> front -> stand-in   POST /v1/responses (translated to chat and back)

Loads: c=1 and c=32 non-streaming (closed loop), and 32 concurrent streams, where latency is the
time to the first piece of text (chat: the first chunk; Messages: the first content_block_delta;
Responses: the first response.output_text.delta). Targets are measured interleaved, --repeats
times, the best of each figure kept (the machine is shared). It prints every result and the
goal of issue 20 - the translation adds <= 2 ms p50 - and exits 1 when one misses.

    .venv/bin/python bench/front.py [--requests 2000] [--streams 320] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.gateway import Goal, Result, Server, cpu_seconds, free_port, spawn, stop  # noqa: E402

ADDED_MS_GOAL = 2.0
ASK = [{"role": "user", "content": "Say something."}]


@dataclass(frozen=True)
class Target:
    label: str
    server: Server
    path: str
    body: dict[str, object]
    first: bytes  # the line that carries the first piece of text of a stream
    last: bytes  # the line that ends a stream

    def numbered(self, i: int, stream: bool) -> dict[str, object]:
        """The body of request ``i``: its number picks the stand-in's delay, the same on every path
        (chat's ``seed``; Messages' metadata.user_id and Responses' user reach it as chat's ``user``)."""
        if self.path == "/v1/messages":
            return {**self.body, "metadata": {"user_id": str(i)}, "stream": stream}
        if self.path == "/v1/responses":
            return {**self.body, "user": str(i), "stream": stream}
        return {**self.body, "seed": i, "stream": stream}


def targets(standin: Server, front: Server) -> list[Target]:
    chat = {"model": "standin", "messages": ASK, "max_tokens": 16}
    return [
        Target("direct", standin, "/v1/chat/completions", chat, b"data: {", b"data: [DONE]"),
        Target("front chat", front, "/v1/chat/completions", chat, b"data: {", b"data: [DONE]"),
        Target("front messages", front, "/v1/messages", chat, b'data: {"type":"content_block_delta"',
               b'data: {"type":"message_stop"'),
        Target("front responses", front, "/v1/responses", {"model": "standin", "input": ASK, "max_output_tokens": 16},
               b'data: {"type":"response.output_text.delta"', b'data: {"type":"response.completed"'),
    ]  # fmt: skip


async def once(session: aiohttp.ClientSession, target: Target, i: int, stream: bool) -> tuple[float, float | None]:
    started, first, done = time.perf_counter(), None, False
    async with session.post(target.server.base + target.path, json=target.numbered(i, stream)) as r:
        r.raise_for_status()
        if not stream:
            await r.read()
            return time.perf_counter() - started, None
        async for line in r.content:
            if first is None and line.startswith(target.first):
                first = time.perf_counter() - started
            done = done or line.startswith(target.last)
    if first is None or not done:
        raise RuntimeError(f"{target.label}: a stream without text or without its end")
    return time.perf_counter() - started, first


async def load(session: aiohttp.ClientSession, target: Target, total: int, concurrency: int, stream: bool) -> Result:
    todo, samples = iter(range(total)), []

    async def worker() -> None:
        for i in todo:
            samples.append(await once(session, target, i, stream))

    cpu, started = cpu_seconds(target.server.proc.pid), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - started, cpu_seconds(target.server.proc.pid) - cpu
    firsts = [s[1] for s in samples if s[1] is not None]
    return Result(total / wall, 1000 * statistics.median(s[0] for s in samples), 1e6 * cpu / total,
                  1000 * statistics.median(firsts) if firsts else math.nan)  # fmt: skip


async def measure(paths: list[Target], args: argparse.Namespace) -> dict[tuple[str, str], Result]:
    loads = {"c=1": (args.requests_c1, 1, False), "c=32": (args.requests, 32, False), "32 streams": (args.streams, 32, True)}
    out: dict[tuple[str, str], Result] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:  # fmt: skip
        for target in paths:  # warm-up
            await load(session, target, 64, 32, False)
            await load(session, target, 32, 32, True)
        for _ in range(args.repeats):
            for name, (total, concurrency, stream) in loads.items():
                for target in paths:
                    result = await load(session, target, total, concurrency, stream)
                    out[target.label, name] = result.best(out.get((target.label, name)))
    return out


def report(results: dict[tuple[str, str], Result], labels: list[str]) -> bool:
    for name in ("c=1", "c=32", "32 streams"):
        for label in labels:
            print(f"{label:<16} {name:<11} {results[label, name].line()}")
    print("\nratios from this run (each path against direct chat to the stand-in):")
    goals = []
    for via in labels[1:]:
        goals += [Goal(f"{via} c=1: added p50", results[via, "c=1"].p50_ms - results["direct", "c=1"].p50_ms,
                       ADDED_MS_GOAL, True),
                  Goal(f"{via} c=32: added p50", results[via, "c=32"].p50_ms - results["direct", "c=32"].p50_ms,
                       ADDED_MS_GOAL, True),
                  Goal(f"{via} 32 streams: added p50 to first text",
                       results[via, "32 streams"].first_p50_ms - results["direct", "32 streams"].first_p50_ms,
                       ADDED_MS_GOAL, True)]  # fmt: skip
        rate = results[via, "c=32"].rate / results["direct", "c=32"].rate
        print(f"{via + ' c=32: req/s / direct':<50} {rate:6.2f}x  (informative)")
        print(f"{via + ' c=32: its CPU per request':<50} {results[via, 'c=32'].cpu_us:6.0f} us  (informative)")
    for goal in goals:
        print(goal.line())
    return all(g.ok for g in goals)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000, help="non-streaming requests at c=32")
    ap.add_argument("--requests-c1", type=int, default=200, help="requests at c=1")
    ap.add_argument("--streams", type=int, default=320, help="streams, 32 at a time")
    ap.add_argument("--repeats", type=int, default=5, help="measurements of each, the best kept")
    args = ap.parse_args()
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="bench-front-") as tmp:
        logs = Path(tmp)
        try:
            port = free_port()
            servers.append(spawn("direct", [sys.executable, "tests/programs/openai_standin.py", "--port", str(port),
                                            "--delay-ms", "20", "--jitter-ms", "10"], port, logs))  # fmt: skip
            port = free_port()
            servers.append(spawn("front", [sys.executable, "-m", "launcher.front", "--host", "127.0.0.1", "--port",
                                           str(port), "--upstream", servers[0].base, "--translate",
                                           "messages,count_tokens,responses"], port, logs))  # fmt: skip
            paths = targets(servers[0], servers[1])
            print(f"stand-in: 20 +- 10 ms before the reply, streams of 16 chunks 5 ms apart; c=1 x {args.requests_c1}, "
                  f"c=32 x {args.requests}, {args.streams} streams 32 at a time; best of {args.repeats}, interleaved",
                  flush=True)  # fmt: skip
            results = asyncio.run(measure(paths, args))
        finally:
            for server in reversed(servers):
                stop(server.proc)
    return 0 if report(results, [t.label for t in paths]) else 1


if __name__ == "__main__":
    sys.exit(main())
