"""The gateway's member pool against a fake starter (the real one runs `modelserve up`; see
tests/e2e/test_fleet.py): starts once however many ask, unloads the least recently used idle member
and never a busy one, expires idle members on a fake clock, bounds each member's queue."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from launcher.core.fleet_spec import Policy
from launcher.gateway import policy
from launcher.gateway.metrics import Metrics
from launcher.gateway.plan import MemberPlan
from launcher.gateway.pool import Busy, Pool, StartError, Unavailable, Upstream
from tests.fakes import FakeClock, settle


class FakeStarter:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: dict[str, StartError] = {}
        self.dead: set[str] = set()

    async def start(self, plan: MemberPlan, *, timeout: float) -> Upstream:
        self.events.append(f"start {plan.name}")
        await self.gate.wait()
        if plan.name in self.fail:
            raise self.fail.pop(plan.name)
        self.dead.discard(plan.name)
        return Upstream(f"http://127.0.0.1/{plan.name}", plan.name, ((1, 0.0),))

    async def stop(self, plan: MemberPlan) -> None:
        self.events.append(f"stop {plan.name}")

    def alive(self, plan: MemberPlan, upstream: Upstream) -> bool:
        return plan.name not in self.dead

    def adopt(self, plan: MemberPlan) -> Upstream | None:
        return None


def make(names: str, clock: FakeClock | None = None, **rules: Any) -> tuple[Pool, FakeStarter]:
    starter = FakeStarter()
    members = [MemberPlan(name=n, deployment=f"lab.{n}", model_id=n, preload=n.endswith("!")) for n in names.split()]
    return Pool(members, Policy(**rules), starter, Metrics(), clock=clock or FakeClock(1000.0)), starter


def run(coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(), 10))


def test_eight_requests_for_a_cold_member_start_it_once() -> None:
    async def body() -> None:
        pool, starter = make("a b")
        starter.gate.clear()
        m = pool.members["a"]

        async def ask() -> str:
            async with pool.use(m, pool.clock() + 60) as up:
                return up.base_url

        tasks = [asyncio.create_task(ask()) for _ in range(8)]
        await settle(lambda: m.in_flight == 8)
        assert m.state == "starting" and m.in_flight == 8
        starter.gate.set()
        assert set(await asyncio.gather(*tasks)) == {"http://127.0.0.1/a"}
        assert starter.events == ["start a"]
        assert (m.loads, m.requests, m.in_flight) == (1, 8, 0)

    run(body)


def test_a_full_fleet_unloads_the_least_recently_used_idle_member() -> None:
    async def body() -> None:
        clock = FakeClock(1000.0)
        pool, starter = make("a b c", clock, max_loaded=2)
        for name in ("a", "b"):
            await pool.load(pool.members[name], clock() + 60)
            clock.advance(10)
        async with pool.use(pool.members["a"], clock() + 60):  # a is now the more recent
            pass
        clock.advance(10)
        await pool.load(pool.members["c"], clock() + 60)
        assert starter.events == ["start a", "start b", "stop b", "start c"]
        assert [m.state for m in pool.members.values()] == ["ready", "stopped", "ready"]

    run(body)


def test_a_member_with_requests_in_flight_is_never_unloaded() -> None:
    async def body() -> None:
        pool, starter = make("a b", max_loaded=1)
        a, b = pool.members["a"], pool.members["b"]
        release = asyncio.Event()
        stopped_while_busy: list[int] = []

        async def stop(plan: MemberPlan) -> None:
            stopped_while_busy.append(pool.members[plan.name].in_flight)
            starter.events.append(f"stop {plan.name}")

        starter.stop = stop  # type: ignore[method-assign]

        async def hold_a() -> None:
            async with pool.use(a, pool.clock() + 60):
                await release.wait()

        holder = asyncio.create_task(hold_a())
        await settle(lambda: a.in_flight == 1)
        waiter = asyncio.create_task(pool.load(b, pool.clock() + 60))
        await settle()
        assert b.state == "stopped" and a.state == "ready" and starter.events == ["start a"]
        release.set()
        await asyncio.gather(holder, waiter)
        assert starter.events == ["start a", "stop a", "start b"]
        assert stopped_while_busy == [0]

    run(body)


def test_a_busy_full_fleet_answers_503_at_the_deadline() -> None:
    async def body() -> None:
        clock = FakeClock(1000.0)
        pool, _ = make("a b", clock, max_loaded=1)
        release = asyncio.Event()

        async def hold_a() -> None:
            async with pool.use(pool.members["a"], clock() + 60):
                await release.wait()

        holder = asyncio.create_task(hold_a())
        await settle(lambda: pool.members["a"].in_flight == 1)
        with pytest.raises(Busy) as busy:
            await pool.load(pool.members["b"], clock() + 0.1)
        assert busy.value.status == 503 and "all stayed busy" in str(busy.value)
        release.set()
        await holder

    run(body)


def test_idle_members_unload_after_the_ttl_on_the_clock() -> None:
    async def body() -> None:
        clock = FakeClock(1000.0)
        pool, starter = make("a b", clock, idle_ttl=600)
        await pool.load(pool.members["a"], clock() + 60)
        clock.advance(300)
        await pool.load(pool.members["b"], clock() + 60)
        clock.advance(299)  # a idle for 599 s, b for 299 s
        await pool.tick()
        assert starter.events == ["start a", "start b"]
        clock.advance(1)
        await pool.tick()
        assert starter.events == ["start a", "start b", "stop a"]
        clock.advance(300)
        await pool.tick()
        assert starter.events[-1] == "stop b"
        assert all(m.state == "stopped" for m in pool.members.values())

    run(body)


def test_a_full_member_queue_answers_429() -> None:
    async def body() -> None:
        pool, _ = make("a", max_concurrency=2, max_queue=1)
        a = pool.members["a"]
        release = asyncio.Event()

        async def hold() -> None:
            async with pool.use(a, pool.clock() + 60):
                await release.wait()

        holders = [asyncio.create_task(hold()) for _ in range(3)]  # 2 in flight, 1 waiting
        await settle(lambda: (a.in_flight, a.waiting) == (2, 1))
        with pytest.raises(Busy) as busy:
            await hold()
        assert busy.value.status == 429 and busy.value.retry_after >= 1
        release.set()
        await asyncio.gather(*holders)
        assert (a.in_flight, a.waiting, a.requests) == (0, 0, 3)

    run(body)


def test_a_failed_start_reaches_every_waiting_request_and_the_next_one_tries_again() -> None:
    async def body() -> None:
        pool, starter = make("a")
        starter.fail["a"] = StartError("model not found")
        a = pool.members["a"]
        results = await asyncio.gather(*(pool.load(a, pool.clock() + 60) for _ in range(3)), return_exceptions=True)
        assert all(isinstance(r, Unavailable) and "model not found" in str(r) for r in results)
        assert starter.events == ["start a"] and a.last_error == "model not found" and a.errors == 1
        await pool.load(a, pool.clock() + 60)
        assert a.state == "ready" and a.last_error is None

    run(body)


def test_no_room_in_memory_unloads_an_idle_member_and_retries() -> None:
    async def body() -> None:
        pool, starter = make("a b")
        await pool.load(pool.members["a"], pool.clock() + 60)
        starter.fail["b"] = StartError("will not fit", no_room=True)
        await pool.load(pool.members["b"], pool.clock() + 60)
        assert starter.events == ["start a", "start b", "stop a", "start b"]

    run(body)


def test_a_member_that_died_is_noticed_and_a_preloaded_one_comes_back() -> None:
    async def body() -> None:
        pool, starter = make("a p!")
        await pool.preload()
        await pool.load(pool.members["a"], pool.clock() + 60)
        starter.dead |= {"a", "p!"}
        await pool.tick()
        await settle(lambda: pool.members["p!"].loads == 2)  # the preloaded one started again
        assert pool.members["a"].state == "stopped" and pool.members["a"].last_error == "its server exited"
        assert pool.members["p!"].state == "ready" and pool.members["p!"].loads == 2
        assert starter.events == ["start p!", "start a", "stop a", "stop p!", "start p!"]

    run(body)


def test_policy_decisions() -> None:
    snap = policy.Snapshot
    members = [snap("a", "ready", 0, 0, 5.0), snap("b", "ready", 1, 0, 1.0), snap("c", "starting", 0, 0, 0.0),
               snap("d", "ready", 0, 2, 0.0), snap("e", "stopped", 0, 0, 0.0)]  # fmt: skip
    assert policy.needs_room(members, "e", 4) and not policy.needs_room(members, "e", 5)
    assert not policy.needs_room(members, "e", 0)
    assert policy.victim(members, "e") == "a"  # b is busy, d has waiters, c is starting
    assert policy.victim(members, "a") is None
    assert policy.expired(members, 605.0, 600) == ["a"]
    assert policy.expired(members, 10**6, 0) == []


def test_a_cpu_member_that_would_not_fit_in_free_memory_unloads_idle_ones_first() -> None:
    async def body() -> None:
        gib = 2**30
        starter = FakeStarter()
        members = [MemberPlan(name=n, deployment=f"lab.{n}", model_id=n, memory_bytes=need * gib)
                   for n, need in (("a", 6), ("b", 6), ("c", 10))]  # fmt: skip
        total = 20 * gib

        def available() -> int:  # what the loaded members leave of 20 GiB
            return total - sum(p.memory_bytes for p in members if pool.members[p.name].state in ("ready", "starting"))

        pool = Pool(members, Policy(), starter, Metrics(), clock=FakeClock(1000.0), available_memory=available)
        await pool.load(pool.members["a"], pool.clock() + 60)
        pool.clock.now += 1  # type: ignore[attr-defined]
        await pool.load(pool.members["b"], pool.clock() + 60)  # 8 GiB left: b fits
        await pool.load(pool.members["c"], pool.clock() + 60)  # needs 11 with headroom: a (LRU) goes
        assert starter.events == ["start a", "start b", "stop a", "start c"]

    run(body)
