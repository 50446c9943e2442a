"""The pooling engine alone, on an encoder that counts instead of a model: which requests share
a forward pass (the gathering rule on a fake clock), a bad input failing only its request, large
requests split by length, and a stop answering what still waits with 503."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from backends.builtin_server.engine.pooling import PoolingEngine, PoolJob, gather
from backends.builtin_server.errors import ApiError
from tests.fakes import FakeClock


@dataclass(frozen=True)
class Word:
    text: str

    @property
    def tokens(self) -> int:
        return len(self.text)


class CountingEncoder:
    """Outputs each input upper-cased; refuses inputs containing "!"; records every pass."""

    task = "embed"

    def __init__(self) -> None:
        self.passes: list[list[str]] = []
        self.entered = threading.Event()  # a pass has begun
        self.gate = threading.Event()  # passes run while it is set
        self.gate.set()

    def prepare(self, inputs: Sequence[Any]) -> list[Word]:
        for i, text in enumerate(inputs):
            if "!" in text:
                raise ApiError(400, f"input[{i}] shouts")
        return [Word(t) for t in inputs]

    def run(self, items: Sequence[Any]) -> list[str]:
        self.entered.set()
        self.gate.wait(10)
        self.passes.append([w.text for w in items])
        return [w.text.upper() for w in items]


def job(*inputs: str, at: float = 100.0) -> PoolJob:
    return PoolJob(list(inputs), at)


def test_gather_takes_what_waits_and_what_arrives_before_the_deadline() -> None:
    clock = FakeClock(100.0)
    arrivals = deque([(100.001, job("b")), (100.004, job("c")), (100.050, job("late"))])

    def take(timeout: float) -> PoolJob | None:
        # The next arrival comes if it lands within the timeout; the clock moves to it (or to the end).
        if arrivals and arrivals[0][0] <= clock.now + timeout:
            clock.now = max(clock.now, arrivals[0][0])
            return arrivals.popleft()[1]
        clock.now += timeout
        return None

    batch, held = gather(job("a"), take, limit=32, target=32, wait_until=100.005, clock=clock)
    assert [j.inputs for j in batch] == [["a"], ["b"], ["c"]] and held is None
    assert [j.inputs for _, j in arrivals] == [["late"]]  # after the deadline: the next batch's
    assert clock.now == 100.005


def test_gather_does_not_wait_once_the_batch_is_as_large_as_the_last_one() -> None:
    clock = FakeClock(100.0)
    waiting, arrivals = deque([job("b")]), deque([(100.001, job("c"))])

    def take(timeout: float) -> PoolJob | None:
        if waiting:
            return waiting.popleft()
        if arrivals and arrivals[0][0] <= clock.now + timeout:
            clock.now = arrivals[0][0]
            return arrivals.popleft()[1]
        clock.now += timeout
        return None

    # The last pass had 2 inputs: "a" and "b" (already waiting) make 2, so nothing more is awaited.
    batch, _ = gather(job("a"), take, limit=32, target=2, wait_until=100.010, clock=clock)
    assert [j.inputs for j in batch] == [["a"], ["b"]] and clock.now == 100.0


def test_gather_stops_at_the_limit_and_holds_the_job_that_does_not_fit() -> None:
    waiting = deque([job("b", "c"), job("d", "e", "f"), job("g")])
    batch, held = gather(job("a"), lambda t: waiting.popleft() if waiting else None, limit=4, target=1,
                         wait_until=0, clock=FakeClock(100.0))  # fmt: skip
    assert [j.inputs for j in batch] == [["a"], ["b", "c"]]
    assert held is not None and held.inputs == ["d", "e", "f"]


def test_waiting_requests_share_a_pass_and_a_bad_one_fails_alone() -> None:
    encoder = CountingEncoder()
    engine = PoolingEngine(encoder, max_batch_inputs=8, batch_wait=0)
    encoder.gate.clear()  # the first pass blocks: the others queue up behind it
    engine.start()
    try:
        first = engine.submit(["one"])
        assert encoder.entered.wait(10)  # its pass has begun and waits at the gate
        waiting = [engine.submit(["two"]), engine.submit(["oops!"]), engine.submit(["three", "four"])]
        encoder.gate.set()
        assert first.result(10).outputs == ["ONE"]
        assert waiting[0].result(10).outputs == ["TWO"]
        with pytest.raises(ApiError, match="input\\[0\\] shouts"):
            waiting[1].result(10)
        result = waiting[2].result(10)
        assert (result.outputs, result.tokens) == (["THREE", "FOUR"], [5, 4])
        assert ["two", "three", "four"] in encoder.passes  # the three that waited: one pass
    finally:
        engine.stop()


def test_a_request_larger_than_a_batch_runs_in_passes_sorted_by_length() -> None:
    encoder = CountingEncoder()
    engine = PoolingEngine(encoder, max_batch_inputs=2, batch_wait=0)
    engine.start()
    try:
        words = ["ccc", "a", "bbbb", "dd", "e"]
        assert engine.submit(words).result(10).outputs == [w.upper() for w in words]  # the request's order
        assert encoder.passes == [["a", "e"], ["dd", "ccc"], ["bbbb"]]
        assert engine.passes == 3
    finally:
        engine.stop()


def test_stop_answers_what_waits_with_503_and_refuses_new_requests() -> None:
    encoder = CountingEncoder()
    encoder.gate.clear()
    engine = PoolingEngine(encoder, max_batch_inputs=1, batch_wait=0, max_queue=2)
    engine.start()
    running = engine.submit(["a"])
    assert encoder.entered.wait(10)
    queued = [engine.submit(["b"]), engine.submit(["c"])]
    with pytest.raises(ApiError) as full:
        engine.submit(["d"])
    assert full.value.status == 503 and full.value.retry_after == 1
    threading.Timer(0.2, encoder.gate.set).start()
    engine.stop(timeout=10)
    assert running.result(10).outputs == ["A"]
    for future in queued:
        with pytest.raises(ApiError) as stopped:
            future.result(10)
        assert stopped.value.status == 503
    with pytest.raises(ApiError, match="shutting down"):
        engine.submit(["e"])
