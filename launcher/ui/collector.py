"""The dashboard's one loop: every tick it reads the records, asks each running deployment what
its backend said it can tell (Prometheus metrics, request summaries, a fleet's members), and
publishes one update to every open page (the SSE stream in app.py).

A tick never waits on a slow server longer than ``FETCH_TIMEOUT``; a server that does not answer
gets no figures that tick, and its card still shows what its record and processes say.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from launcher.core.telemetry import Telemetry
from launcher.process.liveness import deployment_state, resident_bytes
from launcher.store import records
from launcher.ui import BACKEND, scrape
from launcher.ui.cards import Card, MemberCard, card_of, member_cards
from launcher.ui.timeline import Figures, Timeline

log = logging.getLogger("modelserve.ui")
FETCH_TIMEOUT = 2.0  # seconds a server gets to answer one tick's questions
HISTORY_S = 2 * scrape.TTFT_WINDOW_S  # readings kept per deployment (the TTFT window and some)
RING_TOKENS_S = 10.0  # tokens/s from request summaries: over the last 10 s
RECENT = 500  # request summaries the page can be sent
QUEUE = 64  # updates a page may fall behind by before it is dropped (it reconnects and catches up)
LIVE = ("running", "starting", "restarting")


@dataclass
class Source:
    """What was seen of one deployment across ticks."""

    readings: deque[scrape.Reading] = field(default_factory=deque)
    epoch: str | None = None  # its request ring's run, and the last summary read from it
    last_id: int = 0
    done: deque[tuple[float, int, float | None]] = field(default_factory=deque)  # (time, completion tokens, ttft)


@dataclass
class Seen:
    """One deployment at one tick."""

    record: records.DeploymentRecord
    card: Card
    figures: dict[str, float | None]
    requests: list[dict[str, Any]]
    fleet: dict[str, Any] | None = None
    fleet_error: str | None = None


class Collector:
    def __init__(self, session: aiohttp.ClientSession, *, own_name: str | None = None, interval: float = 1.0,
                 clock: Callable[[], float] = time.time, timeline: Timeline | None = None) -> None:  # fmt: skip
        self.session = session
        self.own_name = own_name  # the dashboard's own record: not a deployment to show
        self.interval = interval
        self.clock = clock
        self.timeline = timeline or Timeline()
        self.requests: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.cards: list[Card] = []
        self.records: dict[str, records.DeploymentRecord] = {}
        self.secrets: set[str] = set()  # every key a record holds: never let one out (logs, configs)
        self.sources: dict[str, Source] = {}
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()

    # ---- pages ---------------------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE)
        self.subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self.subscribers.discard(queue)

    def snapshot(self) -> dict[str, Any]:
        return {"type": "snapshot", "cards": [c.model_dump() for c in self.cards], "requests": list(self.requests),
                "timeline": self.timeline.columns(), "window_s": self.timeline.window, "interval_s": self.interval}  # fmt: skip

    def _publish(self, update: dict[str, Any]) -> None:
        for queue in list(self.subscribers):
            try:
                queue.put_nowait(update)
            except asyncio.QueueFull:  # a page that stopped reading: let it go (it reconnects)
                self.subscribers.discard(queue)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.get_nowait()
                    queue.put_nowait({"type": "lagging"})

    # ---- the loop ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                await self.tick()
            except Exception:  # one bad tick must not end the dashboard
                log.exception("tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.05, self.interval - (time.monotonic() - started)))

    async def tick(self) -> dict[str, Any]:
        at = self.clock()
        found = [r for r in records.list_all() if r.name != self.own_name and r.backend != BACKEND]
        self.records = {r.name: r for r in found}
        self.secrets = {r.api_key for r in found if r.api_key}
        seen = await asyncio.gather(*(self._observe(r, at) for r in found))
        for gone in set(self.sources) - set(self.records):
            del self.sources[gone]
        self.cards = _arrange(seen)
        row: Figures = {}
        new_requests: list[dict[str, Any]] = []
        for s in seen:
            row.update({f"{s.record.name}\t{k}": v for k, v in s.figures.items()})
            new_requests += s.requests
        new_requests.sort(key=lambda r: r.get("time") or 0.0)
        self.requests.extend(new_requests)
        self.timeline.add(at, row)
        update = {"type": "tick", "t": round(at, 3), "points": row, "cards": [c.model_dump() for c in self.cards],
                  "requests": new_requests}  # fmt: skip
        self._publish(update)
        return update

    async def _observe(self, record: records.DeploymentRecord, at: float) -> Seen:
        state, dead = deployment_state(record)
        memory = resident_bytes(record)
        card = card_of(record, state=state, dead=dead, memory=memory, now=at)
        source = self.sources.setdefault(record.name, Source())
        seen = Seen(record, card, {"memory_mib": None if memory is None else round(memory / 2**20, 1)}, [])
        if state not in LIVE:
            return seen
        telemetry = Telemetry.from_dict(record.telemetry)
        jobs = [self._metrics(record, telemetry, source, at, seen), self._requests(record, telemetry, source, seen)]
        if record.members and "fleet" in record.endpoints:
            jobs.append(self._fleet(record, seen))
        await asyncio.gather(*jobs)
        self._ring_figures(telemetry, source, at, seen)
        return seen

    async def _get(self, record: records.DeploymentRecord, url: str) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {record.api_key}"} if record.api_key else {}
        async with self.session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT)) as r:
            return r.status, await r.read()

    async def _metrics(self, record: records.DeploymentRecord, t: Telemetry, source: Source, at: float,
                       seen: Seen) -> None:  # fmt: skip
        if not t.metrics_path or not scrape.wanted_names(t):
            return
        try:
            status, body = await self._get(record, record.base_url + t.metrics_path)
            if status != 200:
                return
            reading = scrape.parse(body.decode(errors="replace"), at, t)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return
        source.readings.append(reading)
        while source.readings and source.readings[0].at < at - HISTORY_S:
            source.readings.popleft()
        seen.figures.update(scrape.figures(source.readings, t))

    async def _requests(self, record: records.DeploymentRecord, t: Telemetry, source: Source, seen: Seen) -> None:
        if not t.requests_path:
            return
        try:
            status, body = await self._get(record, f"{record.base_url}{t.requests_path}?after={source.last_id}")
            page = _json(body) if status == 200 else None
        except (aiohttp.ClientError, TimeoutError):
            return
        if not isinstance(page, dict) or not isinstance(page.get("requests"), list):
            return
        rows = [r for r in page["requests"] if isinstance(r, dict) and isinstance(r.get("id"), int)]
        if page.get("epoch") != source.epoch:  # a new server run: its ids began again
            source.epoch, source.last_id = page.get("epoch"), 0
            rows = [r for r in rows if r["id"] > 0]
        fresh = [r for r in rows if r["id"] > source.last_id]
        if fresh:
            source.last_id = max(r["id"] for r in fresh)
        for r in fresh:
            r["source"] = record.name
            source.done.append((float(r.get("time") or 0.0), int(r.get("completion_tokens") or 0), r.get("ttft_s")))
        seen.requests = fresh

    async def _fleet(self, record: records.DeploymentRecord, seen: Seen) -> None:
        try:
            status, body = await self._get(record, record.endpoints["fleet"])
            fleet = _json(body) if status == 200 else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            seen.fleet_error = f"the gateway did not answer GET /fleet: {type(exc).__name__}"
            return
        if not isinstance(fleet, dict) or not isinstance(fleet.get("members"), list):
            seen.fleet_error = f"the gateway answered GET /fleet with HTTP {status}"
            return
        seen.fleet = fleet
        seen.figures["running"] = float(sum(m.get("in_flight", 0) for m in fleet["members"]))
        seen.figures["queued"] = float(sum(m.get("waiting", 0) for m in fleet["members"]))

    def _ring_figures(self, t: Telemetry, source: Source, at: float, seen: Seen) -> None:
        """Tokens/s and the median TTFT from request summaries, where the metrics have neither
        (the gateway): over the last 10 s and the last minute."""
        while source.done and source.done[0][0] < at - scrape.TTFT_WINDOW_S:
            source.done.popleft()
        if not t.requests_path:
            return
        if not t.generated_tokens:
            recent = sum(tokens for when, tokens, _ in source.done if when >= at - RING_TOKENS_S)
            seen.figures["tokens_per_s"] = round(recent / RING_TOKENS_S, 2)
        if not t.ttft:
            ttfts = sorted(ttft for _, _, ttft in source.done if ttft is not None)
            seen.figures["ttft_p50_s"] = _median(ttfts)


def _json(body: bytes) -> Any:
    import json

    try:
        return json.loads(body)
    except ValueError:
        return None


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else round((values[mid - 1] + values[mid]) / 2, 4)


def _arrange(seen: list[Seen]) -> list[Card]:
    """Top-level cards: deployments and fleets, each fleet holding its members' cards (a member
    whose fleet record is gone stands alone)."""
    by_name = {s.record.name: s for s in seen}
    out = []
    for s in seen:
        if s.record.fleet and s.record.fleet in by_name:
            continue
        if s.record.members:
            details = {name: by_name[name].card for name in s.record.members if name in by_name}
            if s.fleet is not None:
                s.card.members = member_cards(s.fleet, details)
            else:  # the gateway did not say: what the members' own records say
                s.card.members = [MemberCard(name=name.removeprefix(f"{s.record.name}."), deployment=name,
                                             model=card.served_model_name, state=card.state, detail=card)
                                  for name, card in details.items()]  # fmt: skip
            s.card.fleet_error = s.fleet_error
        out.append(s.card)
    return out
