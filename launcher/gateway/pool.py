"""The fleet's members as the gateway drives them: start on first use (once, however many ask),
unload the least recently used idle member when the fleet is full, stop idle ones after the TTL,
notice members that died, and bound how many requests each one takes at a time.

One asyncio lock (``changed``) serialises loads and unloads; a request that reaches a loaded
member never takes it. A member with requests in flight or waiting is never unloaded. Every wait
is bounded by the request's deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

import psutil

from launcher.core.fleet_spec import Policy
from launcher.gateway import policy
from launcher.gateway.metrics import Metrics
from launcher.gateway.plan import MemberPlan

log = logging.getLogger("modelserve.gateway")
MEMORY_HEADROOM = 1.1  # a CPU member needs its estimate plus this margin free before it starts


@dataclass(frozen=True)
class Upstream:
    base_url: str  # http://127.0.0.1:PORT
    model: str  # what the member itself calls its model (sent upstream as `model`)
    pids: tuple[tuple[int, float], ...] = ()  # (pid, create_time) of its processes


class StartError(Exception):
    def __init__(self, message: str, *, no_room: bool = False) -> None:
        super().__init__(message)
        self.no_room = no_room  # it would not fit in memory: unloading another may help


class Busy(Exception):
    """Answered with ``status`` and Retry-After: the fleet or the member is saturated."""

    def __init__(self, status: int, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class Unavailable(Exception):
    """The member failed to start; the message says why (its `up` error)."""


class Starter(Protocol):
    async def start(self, plan: MemberPlan, *, timeout: float) -> Upstream: ...

    async def stop(self, plan: MemberPlan) -> None: ...

    def alive(self, plan: MemberPlan, upstream: Upstream) -> bool: ...

    def adopt(self, plan: MemberPlan) -> Upstream | None: ...


@dataclass
class MemberState:
    plan: MemberPlan
    state: str = "stopped"  # stopped | starting | ready | stopping
    upstream: Upstream | None = None
    in_flight: int = 0
    waiting: int = 0
    last_used: float = 0.0
    requests: int = 0
    errors: int = 0
    loads: int = 0
    last_error: str | None = None
    loaded_at: float | None = None
    task: asyncio.Task[bool] | None = None  # the start under way
    slot: asyncio.Condition = field(default_factory=asyncio.Condition)

    def snapshot(self) -> policy.Snapshot:
        return policy.Snapshot(self.plan.name, self.state, self.in_flight, self.waiting, self.last_used)


class Pool:
    def __init__(self, members: list[MemberPlan], rules: Policy, starter: Starter, metrics: Metrics, *,
                 clock: Callable[[], float] = time.monotonic,
                 available_memory: Callable[[], int] = lambda: int(psutil.virtual_memory().available)) -> None:  # fmt: skip
        self.members = {m.name: MemberState(m) for m in members}
        self.rules = rules
        self.starter = starter
        self.metrics = metrics
        self.clock = clock
        self.available_memory = available_memory
        self.changed = asyncio.Condition()  # held while loading decisions and unloads run
        self.room_waiters = 0
        self._routes: dict[str, MemberState] = {}
        for m in self.members.values():
            for key in (m.plan.model_id, *m.plan.aliases, m.plan.name):
                self._routes.setdefault(key, m)

    # ---- lookup ------------------------------------------------------------------------------

    def lookup(self, model: str) -> MemberState | None:
        return self._routes.get(model)

    def by_name(self, name: str) -> MemberState | None:
        return self.members.get(name)

    def ids(self) -> list[str]:
        return [m.plan.model_id for m in self.members.values()]

    # ---- a request's use of a member ---------------------------------------------------------

    @contextlib.asynccontextmanager
    async def use(self, m: MemberState, deadline: float) -> AsyncIterator[Upstream]:
        """Hold one of the member's request slots, loaded: waits in its queue, starts it if cold."""
        await self._take_slot(m, deadline)
        try:
            await self.ensure_ready(m, deadline)
            assert m.upstream is not None
            m.requests += 1
            yield m.upstream
        finally:
            m.in_flight -= 1
            m.last_used = self.clock()
            self.metrics.in_flight.labels(m.plan.name).set(m.in_flight)
            if m.waiting:  # someone queues for this member's slot
                async with m.slot:
                    m.slot.notify()
            if self.room_waiters:
                asyncio.get_running_loop().create_task(self._wake())

    async def _take_slot(self, m: MemberState, deadline: float) -> None:
        limit, queue = self.rules.max_concurrency, self.rules.max_queue
        if m.in_flight >= limit:
            if m.waiting >= queue:
                raise Busy(429, f"{m.plan.name} has {limit} requests in flight and {queue} waiting", 1.0)
            m.waiting += 1
            t0 = self.clock()
            try:
                async with m.slot:
                    await asyncio.wait_for(m.slot.wait_for(lambda: m.in_flight < limit), max(deadline - t0, 0.001))
            except TimeoutError:
                raise Busy(429, f"{m.plan.name} stayed saturated ({limit} in flight) until the deadline", 1.0) from None
            finally:
                m.waiting -= 1
                self.metrics.queue_wait.labels(m.plan.name).observe(self.clock() - t0)
        m.in_flight += 1
        self.metrics.in_flight.labels(m.plan.name).set(m.in_flight)

    async def ensure_ready(self, m: MemberState, deadline: float) -> None:
        """Return once ``m`` is ready, starting it when nobody else is. Raises Busy when the
        deadline passes first, Unavailable when its start fails."""
        while m.state != "ready":
            if m.task is None:
                async with self.changed:
                    if m.task is None and m.state == "stopped":
                        await self._make_room(m, deadline)
                        m.state = "starting"
                        m.task = asyncio.get_running_loop().create_task(self._start(m))
            task = m.task
            if task is None:
                continue  # an unload of this member just finished: start it again
            remaining = deadline - self.clock()
            try:
                started = await asyncio.wait_for(asyncio.shield(task), max(remaining, 0.001))
            except TimeoutError:
                raise Busy(503, f"{m.plan.name} is still starting; try again shortly", 5.0) from None
            if not started:
                raise Unavailable(f"{m.plan.name} failed to start: {m.last_error}")

    # ---- loading and unloading ---------------------------------------------------------------

    def snapshots(self) -> list[policy.Snapshot]:
        return [m.snapshot() for m in self.members.values()]

    async def _make_room(self, m: MemberState, deadline: float) -> None:
        """With ``changed`` held: unload LRU idle members until ``m`` fits under max_loaded, or
        wait (lock released) for one to become idle."""
        # Host memory first: a CPU member that would not fit next to the loaded ones unloads the
        # least recently used idle ones while there are any (then it starts and may still fit).
        while m.plan.memory_bytes and self.available_memory() < m.plan.memory_bytes * MEMORY_HEADROOM:
            name = policy.victim(self.snapshots(), m.plan.name)
            if name is None:
                break
            await self._unload(self.members[name], f"memory for {m.plan.name}")
        while policy.needs_room(self.snapshots(), m.plan.name, self.rules.max_loaded):
            name = policy.victim(self.snapshots(), m.plan.name)
            if name is not None:
                await self._unload(self.members[name], f"making room for {m.plan.name}")
                continue
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise Busy(503, f"max_loaded={self.rules.max_loaded} members are loaded and all are busy", 5.0)
            self.room_waiters += 1
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                raise Busy(503, f"max_loaded={self.rules.max_loaded} members are loaded and all stayed busy", 5.0) from None  # fmt: skip
            finally:
                self.room_waiters -= 1

    async def _wake(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _start(self, m: MemberState) -> bool:
        t0 = self.clock()
        log.info("loading %s", m.plan.name)
        try:
            while True:
                try:
                    up = await self.starter.start(m.plan, timeout=self.rules.start_timeout)
                    break
                except StartError as exc:
                    name = policy.victim(self.snapshots(), m.plan.name) if exc.no_room else None
                    if name is None:
                        raise
                    async with self.changed:  # memory: unload the LRU idle member and try again
                        await self._unload(self.members[name], f"memory for {m.plan.name}")
            m.upstream, m.state, m.last_error = up, "ready", None
            m.loads += 1
            m.loaded_at = m.last_used = self.clock()
            self.metrics.loads.labels(m.plan.name).inc()
            self.metrics.load_seconds.labels(m.plan.name).observe(self.clock() - t0)
            self.metrics.loaded.labels(m.plan.name).set(1)
            log.info("%s ready in %.1f s at %s", m.plan.name, self.clock() - t0, up.base_url)
            return True
        except Exception as exc:  # any failure is this member's, reported to its requests
            m.state, m.upstream, m.last_error = "stopped", None, str(exc)
            m.errors += 1
            self.metrics.errors.labels(m.plan.name).inc()
            log.error("%s failed to start: %s", m.plan.name, exc)
            return False
        finally:
            m.task = None
            if self.room_waiters:
                asyncio.get_running_loop().create_task(self._wake())

    async def _unload(self, m: MemberState, why: str) -> None:
        """With ``changed`` held."""
        log.info("unloading %s (%s)", m.plan.name, why)
        m.state = "stopping"
        try:
            await self.starter.stop(m.plan)
        finally:
            m.state, m.upstream, m.loaded_at = "stopped", None, None
            self.metrics.loaded.labels(m.plan.name).set(0)
            self.changed.notify_all()

    async def load(self, m: MemberState, deadline: float) -> None:
        """Load without a request (preload, `POST /fleet/load/NAME`)."""
        async with self.use(m, deadline):
            pass

    async def unload(self, m: MemberState) -> bool:
        async with self.changed:
            if not m.snapshot().idle:
                return False
            await self._unload(m, "asked to")
            return True

    # ---- upkeep ------------------------------------------------------------------------------

    def adopt(self) -> None:
        """After a gateway restart: members whose servers still run are ready again."""
        for m in self.members.values():
            up = self.starter.adopt(m.plan)
            if up is not None:
                m.upstream, m.state = up, "ready"
                m.loaded_at = m.last_used = self.clock()
                self.metrics.loaded.labels(m.plan.name).set(1)
                log.info("adopted %s at %s", m.plan.name, up.base_url)

    async def tick(self) -> None:
        """One round of upkeep: members that died are marked stopped (and preloaded ones started
        again); members idle past the TTL are unloaded."""
        for m in self.members.values():
            if m.state == "ready" and m.upstream is not None and not self.starter.alive(m.plan, m.upstream):
                await self.lost(m, "its server exited")
        for name in policy.expired(self.snapshots(), self.clock(), self.rules.idle_ttl):
            async with self.changed:
                m = self.members[name]
                if m.snapshot().idle and self.clock() - m.last_used >= self.rules.idle_ttl:
                    await self._unload(m, f"idle for {self.rules.idle_ttl:g} s")

    async def lost(self, m: MemberState, why: str) -> None:
        """A member's server is gone (it died, or refused a connection): forget it, clean up."""
        async with self.changed:
            if m.state != "ready":
                return
            log.warning("%s: %s", m.plan.name, why)
            m.last_error = why
            m.errors += 1
            self.metrics.errors.labels(m.plan.name).inc()
            await self._unload(m, why)
        if m.plan.preload:
            asyncio.get_running_loop().create_task(self._preload(m))

    async def _preload(self, m: MemberState) -> None:
        try:
            await self.load(m, self.clock() + self.rules.start_timeout)
        except (Busy, Unavailable) as exc:
            log.error("preloading %s: %s", m.plan.name, exc)

    async def preload(self) -> None:
        await asyncio.gather(*(self._preload(m) for m in self.members.values() if m.plan.preload and m.state == "stopped"))  # fmt: skip

    async def shutdown(self) -> None:
        """Stop every member this gateway loaded or adopted; a start under way is cancelled
        (its `up` is interrupted and leaves nothing)."""
        starting = [m.task for m in self.members.values() if m.task is not None]
        for task in starting:
            task.cancel()
        await asyncio.gather(*starting, return_exceptions=True)
        async with self.changed:
            await asyncio.gather(*(self._unload(m, "gateway stopping") for m in self.members.values()
                                   if m.state != "stopped" or self.starter.adopt(m.plan) is not None))  # fmt: skip
