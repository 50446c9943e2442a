"""The engine of an embed or rerank server: one thread owns the model and encodes what concurrent
requests sent, together, in as few forward passes as the batch limit allows.

HTTP threads submit a request's inputs and wait on a future. The engine thread takes the oldest
request, then every other one already waiting, up to ``max_batch_inputs`` inputs; a request that
would overflow the batch opens the next one. While the batch holds fewer inputs than the last
pass did, it also waits for arrivals, up to ``batch_wait`` after the first request came: clients
that were answered together send again together, a few milliseconds apart, and without the wait
the first of them would take a pass alone and the rest the next one (measured: 0.70x of raw
encoding at 16 concurrent clients with a fixed 2 ms wait). A lone client is never held: its last
pass had one input. Each request's inputs are checked (length, token ids) before its batch runs, so a
bad input fails its own request only. A request with more inputs than a batch holds is encoded in
several passes, its inputs sorted by length so that padding stays small. Nothing a request does
can stop the loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from backends.builtin_server.engine.metrics import PoolingMetrics
from backends.builtin_server.errors import ApiError

log = logging.getLogger("modelserve.server")
Clock = Callable[[], float]


class Item(Protocol):
    """One prepared input: its token count decides the padding and the usage."""

    @property
    def tokens(self) -> int: ...


class Encoder(Protocol):
    """What the engine drives (engine/encoders.py): checks a request's inputs, encodes items."""

    task: str

    def prepare(self, inputs: Sequence[Any]) -> Sequence[Item]:
        """The request's inputs as items, or an ApiError (400) naming the first bad one."""
        ...

    def run(self, items: Sequence[Item]) -> list[Any]:
        """One output per item (a vector, or a score), in order: one forward pass."""
        ...


@dataclass(frozen=True)
class PoolResult:
    outputs: list[Any]  # one per input, in the request's order
    tokens: list[int]  # each input's token count


@dataclass(eq=False)
class PoolJob:
    inputs: Sequence[Any]
    arrived: float
    future: Future[PoolResult] = field(default_factory=Future)


def gather(first: PoolJob, take: Callable[[float], PoolJob | None], *, limit: int, target: int, wait_until: float,
           clock: Clock) -> tuple[list[PoolJob], PoolJob | None]:  # fmt: skip
    """The jobs to encode together: ``first``, then what ``take(timeout)`` hands over (None when
    nothing came within ``timeout`` seconds; 0 asks only for what already waits) until the batch
    holds ``limit`` inputs; below ``target`` inputs it waits for arrivals until ``wait_until``.
    Returns the batch and the job that did not fit, which opens the next one."""
    batch, size = [first], len(first.inputs)
    while size < limit:
        job = take(max(0.0, wait_until - clock()) if size < target else 0.0)
        if job is None:
            break
        if size + len(job.inputs) > limit:
            return batch, job
        batch.append(job)
        size += len(job.inputs)
    return batch, None


def _shutting_down() -> ApiError:
    return ApiError(503, "the server is shutting down; retry shortly", error_type="server_error", retry_after=5)


class PoolingEngine:
    def __init__(self, encoder: Encoder, *, max_batch_inputs: int = 32, batch_wait: float = 0.01,
                 max_queue: int = 256, metrics: PoolingMetrics | None = None, clock: Clock = time.monotonic) -> None:  # fmt: skip
        self.encoder = encoder
        self.task = encoder.task
        self.max_batch_inputs = max_batch_inputs
        self.batch_wait = batch_wait
        self.max_queue = max_queue
        self.metrics = metrics or PoolingMetrics()
        self.clock = clock
        self._cond = threading.Condition()
        self._queue: deque[PoolJob] = deque()
        self._held: PoolJob | None = None  # did not fit the last batch: first in the next
        self._last_inputs = 1  # inputs of the last pass: how many a new one waits for
        self._stopping = False
        self.passes = 0  # forward passes run (tests count batching by them)
        self.metrics.queue_depth.set_function(lambda: len(self._queue))
        self._thread = threading.Thread(target=self._loop, name="pooling", daemon=True)

    # -- life cycle (main thread) ---------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            pending = [*([self._held] if self._held else []), *self._queue]
            self._queue.clear()
            self._held = None
            self._cond.notify_all()
        for job in pending:
            job.future.set_exception(_shutting_down())
        if self._thread.is_alive():
            self._thread.join(timeout)

    def warm_up(self, sample: Sequence[Any], timeout: float | None = None) -> PoolResult:
        """One real input through the whole path, so a broken model fails start-up, not a client."""
        return self.submit(sample).result(timeout)

    # -- HTTP threads ---------------------------------------------------------------------------

    def submit(self, inputs: Sequence[Any]) -> Future[PoolResult]:
        job = PoolJob(inputs, self.clock())
        with self._cond:
            if self._stopping:
                raise _shutting_down()
            if len(self._queue) >= self.max_queue:
                self.metrics.rejected.inc()
                raise ApiError(503, f"the server is at capacity ({len(self._queue)} requests waiting); retry "
                                    "shortly", error_type="server_error", retry_after=1)  # fmt: skip
            self._queue.append(job)
            self._cond.notify()
        return job.future

    # -- engine thread --------------------------------------------------------------------------

    def _take(self, timeout: float) -> PoolJob | None:
        with self._cond:
            if not self._queue and timeout > 0 and not self._stopping:
                self._cond.wait(timeout)
            return self._queue.popleft() if self._queue and not self._stopping else None

    def _next_batch(self) -> list[PoolJob] | None:
        with self._cond:
            while self._held is None and not self._queue and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            first = self._held or self._queue.popleft()
            self._held = None
        batch, held = gather(first, self._take, limit=self.max_batch_inputs, target=self._last_inputs,
                             wait_until=first.arrived + self.batch_wait, clock=self.clock)  # fmt: skip
        with self._cond:
            self._held = held
        self._last_inputs = sum(len(job.inputs) for job in batch)
        return batch

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                self._encode(batch)
            except Exception as exc:  # never let one batch end the loop
                log.exception("pooling: a forward pass failed; failing its %d request(s)", len(batch))
                self.metrics.errors.inc()
                error = ApiError(500, f"encoding failed: {type(exc).__name__}: {exc}", error_type="server_error")
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(error)

    def _encode(self, batch: list[PoolJob]) -> None:
        ready: list[tuple[PoolJob, Sequence[Item]]] = []
        for job in batch:
            try:
                ready.append((job, self.encoder.prepare(job.inputs)))
            except ApiError as exc:
                job.future.set_exception(exc)
        flat = [(j, k, item) for j, (_, items) in enumerate(ready) for k, item in enumerate(items)]
        outputs: dict[tuple[int, int], Any] = {}
        # Sorted by length only when it takes several passes (one pass pads to its longest anyway).
        order = sorted(flat, key=lambda t: t[2].tokens) if len(flat) > self.max_batch_inputs else flat
        for start in range(0, len(order), self.max_batch_inputs):
            chunk = order[start : start + self.max_batch_inputs]
            results = self.encoder.run([item for _, _, item in chunk])
            self.passes += 1
            self.metrics.batch_inputs.observe(len(chunk))
            outputs.update({(j, k): out for (j, k, _), out in zip(chunk, results, strict=True)})
        now = self.clock()
        for j, (job, items) in enumerate(ready):
            tokens = [item.tokens for item in items]
            self.metrics.inputs.inc(len(items))
            self.metrics.prompt_tokens.inc(sum(tokens))
            self.metrics.latency.observe(now - job.arrived)
            job.future.set_result(PoolResult([outputs[(j, k)] for k in range(len(items))], tokens))
