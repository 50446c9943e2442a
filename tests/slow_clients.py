"""Slow clients against a real server: hold many connections open, half of them trickling a request
header a byte a second and half silent, then time normal requests on fresh connections while they
are held, and see whether (and how soon) the server closes the slow ones by its own timeouts.

One asyncio process holds them all (a thread per connection would measure the client, not the
server). Used by tests/reliability/test_slow_clients.py (CI: 1,000), `make soak` (8,000) and
bench/slow_clients.py, which prints the figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from dataclasses import dataclass, field

# The request line and the start of a header that never ends: the server sees a request arriving.
TRICKLE_HEAD = b"GET /health HTTP/1.1\r\nHost: slow\r\nX-Slow: "
OPEN_AT_ONCE = 200  # connects in flight together; more only overflows the server's listen backlog


@dataclass(frozen=True)
class NormalRequest:
    """What a normal client sends on a fresh connection; ``ok`` is the status it expects."""

    method: str
    path: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    ok: int = 200

    def encode(self, host: str) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {host}", "Connection: close",
                 f"Content-Length: {len(self.body)}", *(f"{k}: {v}" for k, v in self.headers)]  # fmt: skip
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


@dataclass
class SlowClientReport:
    held: int  # slow connections open at once (asked for: trickling + silent)
    refused: int  # slow connections the server did not accept within the connect timeout
    open_s: float  # how long opening them took
    latencies_s: list[float] = field(default_factory=list)  # each normal request while they were held
    statuses: list[int] = field(default_factory=list)
    still_held_after_normal: int = 0  # slow connections the server had not closed when the last answer came
    closed_by_server: int = 0
    closed_by_server_after_s: float | None = None  # from the last one opened to the last one closed
    left_open: int = 0  # slow connections the server never closed before the deadline

    def summary(self) -> str:
        worst = max(self.latencies_s, default=float("nan"))
        closed = "never" if self.closed_by_server_after_s is None else f"within {self.closed_by_server_after_s:.1f} s"
        return (f"{self.held} slow connections held (half trickling a header byte a second, half silent; "
                f"{self.refused} refused; opened in {self.open_s:.1f} s): {len(self.latencies_s)} normal requests "
                f"answered {sorted(set(self.statuses))} in at most {worst * 1000:.0f} ms with "
                f"{self.still_held_after_normal} still held; {self.closed_by_server} closed by the server {closed}, "
                f"{self.left_open} left open")  # fmt: skip


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards ``wanted`` (never past the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


class _Slow:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, trickle: bool) -> None:
        self.reader, self.writer, self.trickle = reader, writer, trickle
        self.closed_at: float | None = None

    async def watch(self) -> None:
        """Read until the server closes the connection (whatever it sends first, e.g. a 408)."""
        with contextlib.suppress(OSError):
            while await self.reader.read(4096):
                pass
        self.closed_at = time.monotonic()


async def _open(host: str, port: int, trickle: bool, gate: asyncio.Semaphore, timeout: float) -> _Slow | None:
    async with gate:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, asyncio.TimeoutError):
            return None
    slow = _Slow(reader, writer, trickle)
    if trickle:
        writer.write(TRICKLE_HEAD)
    return slow


async def _trickle(conns: list[_Slow], steady: asyncio.Event) -> None:
    """One header byte a second on every trickling connection, spread over the second; ``steady``
    is set once each has sent one (and every watcher task has started reading)."""
    tricklers = [c for c in conns if c.trickle]
    while True:
        for batch in range(10):
            for c in tricklers[batch::10]:
                if c.closed_at is None and not c.writer.is_closing():
                    c.writer.write(b"a")
            await asyncio.sleep(0.1)
        steady.set()


async def normal_request(host: str, port: int, request: NormalRequest, timeout: float) -> tuple[int, float]:
    """(status, seconds) of one request on a fresh connection; status 0 when no answer came in time."""
    started = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        writer.write(request.encode(host))
        # Connection: close, so the whole answer ends at EOF.
        answer = await asyncio.wait_for(reader.read(-1), max(0.1, timeout - (time.monotonic() - started)))
        writer.close()
    except (OSError, asyncio.TimeoutError):
        return 0, time.monotonic() - started
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else 0
    return status, time.monotonic() - started


async def hold_slow_clients(host: str, port: int, count: int, request: NormalRequest, *, samples: int = 5,
                            close_deadline_s: float, connect_timeout_s: float = 10.0,
                            answer_timeout_s: float = 30.0) -> SlowClientReport:  # fmt: skip
    """Open ``count`` slow connections, time ``samples`` normal requests while they are held, then wait
    up to ``close_deadline_s`` (after the last one opened) for the server to close every one."""
    raise_fd_limit(count + 256)
    gate = asyncio.Semaphore(OPEN_AT_ONCE)
    started = time.monotonic()
    opened = await asyncio.gather(*(_open(host, port, i % 2 == 0, gate, connect_timeout_s) for i in range(count)))
    conns = [c for c in opened if c is not None]
    last_open = time.monotonic()
    report = SlowClientReport(held=count, refused=count - len(conns), open_s=last_open - started)
    watchers = [asyncio.create_task(c.watch()) for c in conns]
    steady = asyncio.Event()
    trickler = asyncio.create_task(_trickle(conns, steady))
    try:
        # Time normal requests in the steady state (every slow one held and trickling), not while
        # this process is still starting its readers or the server still accepting the last ones.
        await asyncio.wait_for(steady.wait(), 10 + count / 1000)
        for _ in range(samples):
            status, seconds = await normal_request(host, port, request, answer_timeout_s)
            report.statuses.append(status)
            report.latencies_s.append(seconds)
        report.still_held_after_normal = sum(c.closed_at is None for c in conns)
        remaining = close_deadline_s - (time.monotonic() - last_open)
        if watchers and remaining > 0:
            await asyncio.wait(watchers, timeout=remaining)
    finally:
        trickler.cancel()
        for task in watchers:
            task.cancel()
        for c in conns:
            c.writer.close()
    closed = [c.closed_at for c in conns if c.closed_at is not None]
    report.closed_by_server = len(closed)
    report.left_open = len(conns) - len(closed)
    if closed and not report.left_open:
        report.closed_by_server_after_s = max(closed) - last_open
    return report
