"""What does the fleet gateway add? Its overhead against a fast stand-in upstream, in one run.

The stand-in (tests/programs/openai_standin.py) answers after 10-30 ms of asyncio.sleep and
streams 16 chunks 5 ms apart: a model server that takes time but no CPU, so what differs between
  - direct:   client -> stand-in
  - gateway:  client -> ``python -m launcher.gateway`` (a member with external_url) -> stand-in
is the gateway alone. Loads: c=1 and c=32 non-streaming (a fixed request count, closed loop) and
32 concurrent streams (time to first chunk and to the whole stream). The client is aiohttp in
this process. The targets are measured interleaved, --repeats times, keeping the best of each
figure (the highest rate, the lowest p50s): this machine is shared, and one slow stretch would
otherwise decide a ratio. It prints each result and the goal ratios of the issue - added p50
<= 2 ms (a stream's: to its first chunk) and throughput >= 0.95x direct at c=32 and for 32
streams - and exits 1 when one misses.

``--compare-stacks`` also measures two minimal proxies (bench/stack_proxies.py) against the same
stand-in: uvicorn + httpx, installed into a throwaway venv (.cache/bench-stacks), and bare
aiohttp - the numbers behind the gateway's choice of stack, and what its own logic costs.
A benchmark, not a test: the machine is shared and noisy; compare ratios from one run.

Why the spread (20 +- 10 ms, the same delays on every path, by the requests' seed): when every
request takes exactly 20 ms, the 32 workers move in lockstep, the stand-in and this client meet
their requests in bursts of 32, and a hop in front smooths the bursts - the gateway came out
1.08-1.13x *faster* than direct that way.

    .venv/bin/python bench/gateway.py [--requests 2000] [--streams 320] [--repeats 5] [--compare-stacks]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STACKS_VENV = ROOT / ".cache" / "bench-stacks"
BODY = {"model": "standin", "messages": [{"role": "user", "content": "Say something."}], "max_tokens": 16}
ADDED_MS_GOAL = 2.0
RATE_GOAL = 0.95


# ----------------------------------------------------------------------------- child servers


@dataclass
class Server:
    label: str
    proc: subprocess.Popen[bytes]
    base: str
    log: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(label: str, argv: list[str], port: int, logs: Path, timeout: float = 60) -> Server:
    log = logs / f"{label.replace(' ', '_').replace('+', '_')}.log"
    # The gateway keeps no records for an external member; a state dir of its own all the same.
    env = dict(os.environ, MODELSERVE_HOME=str(logs / "home"))
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(label, proc, f"http://127.0.0.1:{port}", log)
    wait_ready(server, timeout)
    return server


def wait_ready(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            stop(server.proc)  # what it may have left in its group
            raise SystemExit(f"{server.label} exited with {server.proc.returncode}:\n{_tail(server.log)}")
        try:
            with urllib.request.urlopen(server.base + "/health", timeout=2) as resp:
                if resp.status == 200:
                    return
                last = f"/health answered {resp.status}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.1)
    stop(server.proc)
    raise SystemExit(f"{server.label} not ready in {timeout:.0f} s ({last}):\n{_tail(server.log)}")


def _tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-20:])


def stop(proc: subprocess.Popen[bytes]) -> None:
    """The whole process group: uvicorn and aiohttp may leave helpers behind."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        proc.wait(10)


def gateway_plan(port: int, upstream: str, logs: Path) -> Path:
    """A fleet of one member the gateway neither starts nor stops: the stand-in."""
    member = {"name": "standin", "deployment": "bench.standin", "model_id": "standin", "external_url": upstream,
              "external_model": "standin"}  # fmt: skip
    plan = {"name": "bench", "host": "127.0.0.1", "port": port, "members": [member],
            "policy": {"max_concurrency": 1024, "max_queue": 1024}}  # fmt: skip
    path = logs / "plan.json"
    path.write_text(json.dumps(plan))
    return path


def start_all(args: argparse.Namespace, logs: Path, servers: list[Server]) -> None:
    """The stand-in, the gateway in front of it and, with --compare-stacks, the minimal proxies;
    each is appended once started, so the caller's ``finally`` stops whatever did start."""
    port = free_port()
    standin = [sys.executable, "tests/programs/openai_standin.py", "--port", str(port), "--delay-ms",
               str(args.delay_ms), "--jitter-ms", str(args.jitter_ms)]  # fmt: skip
    servers.append(spawn("direct", standin, port, logs))
    upstream = servers[0].base
    port = free_port()
    servers.append(spawn("gateway", [sys.executable, "-m", "launcher.gateway", str(gateway_plan(port, upstream, logs))],
                         port, logs))  # fmt: skip
    if not args.compare_stacks:
        return
    stacks = [("aiohttp alone", "aiohttp", sys.executable)]
    python = stacks_python()
    if python is not None:
        stacks.append(("uvicorn+httpx", "asgi", str(python)))
    for label, stack, interpreter in stacks:
        port = free_port()
        argv = [interpreter, "bench/stack_proxies.py", stack, "--port", str(port), "--upstream", upstream]
        servers.append(spawn(label, argv, port, logs))


def stacks_python() -> Path | None:
    """The throwaway venv with uvicorn and httpx (never .venv), made on first use."""
    python = STACKS_VENV / "bin" / "python"
    check = [str(python), "-c", "import uvicorn, httpx"]
    if python.exists() and subprocess.run(check, capture_output=True, check=False).returncode == 0:
        return python
    # [standard] brings uvloop and httptools, which uvicorn picks by itself: the alternative at its fastest.
    steps = [[sys.executable, "-m", "venv", "--clear", str(STACKS_VENV)],
             [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "uvicorn[standard]",
              "httpx"]]  # fmt: skip
    for step in steps:
        try:
            out = subprocess.run(step, capture_output=True, text=True, check=False, timeout=600)
        except subprocess.TimeoutExpired:
            print(f"uvicorn + httpx skipped: `{' '.join(step)}` took over 600 s")
            return None
        if out.returncode != 0:
            print(f"uvicorn + httpx skipped: `{' '.join(step)}` failed:\n{(out.stderr or out.stdout)[-1500:]}")
            return None
    return python


# ----------------------------------------------------------------------------- the client


@dataclass
class Result:
    rate: float  # requests (or streams) per second
    p50_ms: float  # the whole response
    cpu_us: float  # CPU microseconds per request of the server the client talks to (a proxy, or the stand-in)
    first_p50_ms: float = math.nan  # streams: the first chunk

    def line(self) -> str:
        first = "" if math.isnan(self.first_p50_ms) else f"  first chunk p50 {self.first_p50_ms:6.2f} ms"
        return f"{self.rate:7.1f} req/s  its CPU {self.cpu_us:4.0f} us/req  p50 {self.p50_ms:6.2f} ms{first}"

    def best(self, other: Result | None) -> Result:
        if other is None:
            return self
        firsts = [x for x in (self.first_p50_ms, other.first_p50_ms) if not math.isnan(x)]
        return Result(max(self.rate, other.rate), min(self.p50_ms, other.p50_ms), min(self.cpu_us, other.cpu_us),
                      min(firsts, default=math.nan))  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """CPU time of all the process's threads: from schedstat (nanoseconds) where Linux has it,
    as psutil's clock ticks (10 ms) would round a c=1 run's few hundred requests to nothing."""
    tasks = Path(f"/proc/{pid}/task")
    if not (tasks / str(pid) / "schedstat").exists():
        times = psutil.Process(pid).cpu_times()
        return float(times.user + times.system)
    return sum(_on_cpu_ns(task) for task in tasks.iterdir()) / 1e9


def _on_cpu_ns(task: Path) -> int:
    try:
        return int((task / "schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0  # a thread that ended just now


async def plain(session: aiohttp.ClientSession, url: str, i: int) -> tuple[float, float | None]:
    started = time.perf_counter()
    async with session.post(url, json={**BODY, "seed": i}) as r:
        r.raise_for_status()
        await r.read()
    return time.perf_counter() - started, None


async def streamed(session: aiohttp.ClientSession, url: str, i: int) -> tuple[float, float | None]:
    started = time.perf_counter()
    first: float | None = None
    done = False
    async with session.post(url, json={**BODY, "seed": i, "stream": True}) as r:
        r.raise_for_status()
        async for line in r.content:
            if first is None and line.startswith(b"data: {"):
                first = time.perf_counter() - started
            done = done or line.startswith(b"data: [DONE]")
    if first is None or not done:
        raise RuntimeError(f"{url}: a stream without chunks or without [DONE]")
    return time.perf_counter() - started, first


async def load(session: aiohttp.ClientSession, server: Server, total: int, concurrency: int, stream: bool) -> Result:
    """``total`` requests by ``concurrency`` workers, each sending its next as soon as one ends."""
    url = server.base + "/v1/chat/completions"
    call = streamed if stream else plain
    todo = iter(range(total))
    samples: list[tuple[float, float | None]] = []

    async def worker() -> None:
        for i in todo:
            samples.append(await call(session, url, i))

    cpu, started = cpu_seconds(server.proc.pid), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - started, cpu_seconds(server.proc.pid) - cpu
    firsts = [s[1] for s in samples if s[1] is not None]
    return Result(total / wall, 1000 * statistics.median(s[0] for s in samples), 1e6 * cpu / total,
                  1000 * statistics.median(firsts) if firsts else math.nan)  # fmt: skip


def loads(args: argparse.Namespace) -> dict[str, tuple[int, int, bool]]:
    """name: (requests, concurrency, stream)."""
    return {"c=1": (args.requests_c1, 1, False), "c=32": (args.requests, 32, False),
            "32 streams": (args.streams, 32, True)}  # fmt: skip


async def measure(targets: list[Server], args: argparse.Namespace) -> dict[tuple[str, str], Result]:
    """Every load on every target, interleaved (load by load, target by target), --repeats times."""
    out: dict[tuple[str, str], Result] = {}
    connector = aiohttp.TCPConnector(limit=0)  # the loads bound concurrency themselves
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        for server in targets:  # warm-up: connections, the gateway's first use of its member
            await load(session, server, 64, 32, False)
            await load(session, server, 32, 32, True)
        for _ in range(args.repeats):
            for name, (total, concurrency, stream) in loads(args).items():
                for server in targets:
                    result = await load(session, server, total, concurrency, stream)
                    out[server.label, name] = result.best(out.get((server.label, name)))
    return out


# ----------------------------------------------------------------------------- goals


@dataclass(frozen=True)
class Goal:
    what: str
    value: float
    limit: float
    at_most: bool  # added milliseconds: at most; rate ratios: at least

    @property
    def ok(self) -> bool:
        return self.value <= self.limit if self.at_most else self.value >= self.limit

    def line(self) -> str:
        shown = f"{self.value:+6.2f} ms" if self.at_most else f"{self.value:6.2f}x  "
        goal = f"<= {self.limit:g} ms" if self.at_most else f">= {self.limit:g}x"
        return f"{self.what:<50} {shown}  (goal {goal}: {'ok' if self.ok else 'MISSED'})"


def overhead(results: dict[tuple[str, str], Result], via: str) -> list[Goal]:
    """``via`` against direct: added p50 and the rate ratio at c=32 and for 32 streams."""
    d32, g32 = results["direct", "c=32"], results[via, "c=32"]
    ds, gs = results["direct", "32 streams"], results[via, "32 streams"]
    return [
        Goal(f"{via} c=32: added p50", g32.p50_ms - d32.p50_ms, ADDED_MS_GOAL, True),
        Goal(f"{via} c=32: req/s / direct", g32.rate / d32.rate, RATE_GOAL, False),
        Goal(f"{via} 32 streams: added p50 first chunk", gs.first_p50_ms - ds.first_p50_ms, ADDED_MS_GOAL, True),
        Goal(f"{via} 32 streams: streams/s / direct", gs.rate / ds.rate, RATE_GOAL, False),
    ]


def report(results: dict[tuple[str, str], Result], targets: list[str], args: argparse.Namespace) -> bool:
    for name in loads(args):
        for label in targets:
            print(f"{label:<14} {name:<11} {results[label, name].line()}")
    print("\nratios from this run:")
    goals = overhead(results, "gateway")
    for goal in goals:
        print(goal.line())
    for via in targets[1:]:
        if via != "gateway":  # the stacks compared: the same figures, no goals
            print()
            for goal in overhead(results, via):
                print(f"{goal.what:<50} " + (f"{goal.value:+6.2f} ms" if goal.at_most else f"{goal.value:6.2f}x"))
        added = results[via, "c=1"].p50_ms - results["direct", "c=1"].p50_ms
        print(f"{via + ' c=1: added p50':<50} {added:+6.2f} ms  (informative)")
        # A stream's latency is its first chunk (the goal above); the whole stream adds the
        # relay of each of its 16 chunks, which the streams/s ratio already weighs.
        whole = results[via, "32 streams"].p50_ms - results["direct", "32 streams"].p50_ms
        print(f"{via + ' 32 streams: added p50 whole stream':<50} {whole:+6.2f} ms  (informative)")
        # On a few shared cores the proxy's CPU per request is what caps its rate and, as c=32
        # arrives in bursts, what each request waits for its turn in the proxy's one event loop.
        cpu, standin = results[via, "c=32"].cpu_us, results["direct", "c=32"].cpu_us
        print(f"{via + ' c=32: its CPU per request':<50} {cpu:6.0f} us  (the stand-in's: {standin:.0f} us)")
    return all(g.ok for g in goals)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000, help="non-streaming requests at c=32")
    ap.add_argument("--requests-c1", type=int, default=200, help="requests at c=1")
    ap.add_argument("--streams", type=int, default=320, help="streams, 32 at a time")
    ap.add_argument("--repeats", type=int, default=5, help="measurements of each, the best kept")
    ap.add_argument("--delay-ms", type=float, default=20.0, help="the stand-in's wait before it answers")
    ap.add_argument("--jitter-ms", type=float, default=10.0, help="spread of the stand-in's wait, either way")
    ap.add_argument("--compare-stacks", action="store_true", help="also minimal uvicorn+httpx and aiohttp proxies")
    args = ap.parse_args()
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        try:
            start_all(args, Path(tmp), servers)
            print(f"stand-in: {args.delay_ms:g} +- {args.jitter_ms:g} ms before the reply, streams of 16 chunks "
                  f"5 ms apart; c=1 x {args.requests_c1}, c=32 x {args.requests}, {args.streams} streams 32 at a time; "
                  f"best of {args.repeats}, interleaved", flush=True)  # fmt: skip
            results = asyncio.run(measure(servers, args))
        finally:
            for server in reversed(servers):
                stop(server.proc)
    return 0 if report(results, [s.label for s in servers], args) else 1


if __name__ == "__main__":
    sys.exit(main())
