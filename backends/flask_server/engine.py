"""The scheduler: one thread owns the model and the tokenizer; HTTP threads only enqueue and wait.

Why one thread: HF fast tokenizers raise "Already borrowed" when two threads use them at once, and
AgentScope's original script corrupted generation by calling ``model.generate`` from every Flask
thread. Here an HTTP thread puts a :class:`GenerationRequest` on the queue and waits on a Future
(or, for a stream, reads a per-request event queue). The scheduler takes the oldest waiting request,
drains further queued non-streaming requests with the same sampling settings into one batch, and
hands it to the :class:`ModelRunner` (runner.py), which runs one generate() call. A stream runs alone.
Nothing a request does can end the loop: failures resolve that request's future with an error.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any

from backends.flask_server.errors import ApiError
from backends.flask_server.generation import GREEDY, ChatMessage, GenerationDefaults, GenerationRequest, TokenBudget
from backends.flask_server.jobs import (
    Completion,
    Job,
    StreamDelta,
    StreamEvent,
    StreamFailed,
    StreamFinished,
    StreamHandle,
    StreamStarted,
)
from backends.flask_server.metrics import Metrics
from backends.flask_server.runner import Aborted, ModelRunner, Prepared

# Re-exported: routes and tests import the result and event types from here.
__all__ = [
    "Completion",
    "Engine",
    "StreamDelta",
    "StreamEvent",
    "StreamFailed",
    "StreamFinished",
    "StreamHandle",
    "StreamStarted",
    "generation_defaults",
]

log = logging.getLogger("modelserve.flask_server")


def generation_defaults(generation_config: Any) -> GenerationDefaults:
    """/llm/ keeps generate()'s meaning: unset sampling fields come from the model's generation_config."""
    base = GenerationDefaults()

    def pick(name: str, fallback: Any) -> Any:
        value = getattr(generation_config, name, None)
        return fallback if value is None else value

    return GenerationDefaults(
        do_sample=bool(pick("do_sample", base.do_sample)),
        temperature=float(pick("temperature", base.temperature)),
        top_p=float(pick("top_p", base.top_p)),
        top_k=int(pick("top_k", base.top_k)),
        repetition_penalty=float(pick("repetition_penalty", base.repetition_penalty)),
    )


def _shutting_down() -> ApiError:
    return ApiError(503, "the server is shutting down; retry shortly", error_type="server_error")


class Engine:
    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_batch_size: int,
        max_new_tokens_limit: int,
        metrics: Metrics | None = None,
        tool_parser: str = "generic",
    ) -> None:
        self.max_batch_size = max_batch_size
        self.limit = max_new_tokens_limit
        self.metrics = metrics or Metrics()
        self.metrics.queue_depth = self.queue_depth
        self.metrics.running = self.running
        self._running = 0  # requests inside the current generate() call (a gauge; written by the scheduler only)
        self.defaults = generation_defaults(getattr(model, "generation_config", None))
        self._cond = threading.Condition()
        self._queue: deque[Job] = deque()
        self._stopping = False
        # Set on shutdown: every stopping criterion answers "stop" at the next step.
        self._abort = threading.Event()
        self.runner = ModelRunner(model, tokenizer, limit=self.limit, metrics=self.metrics, abort=self._abort,
                                  tool_parser=tool_parser)  # fmt: skip
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)

    # -- life cycle (main thread) ---------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            pending = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        self._abort.set()
        for job in pending:
            job.fail(_shutting_down())
        if self._thread.is_alive():
            self._thread.join(timeout)

    def warm_up(self, timeout: float | None = None) -> Completion:
        """One greedy token through the real path, so a broken model fails start-up, not a client."""
        request = GenerationRequest(
            sampling=GREEDY,
            budget=TokenBudget(field="max_new_tokens", max_new_tokens=1),
            messages=(ChatMessage(role="user", content="Hi"),),
        )
        return self.submit(request).result(timeout)

    # -- HTTP threads ---------------------------------------------------------------------------

    def queue_depth(self) -> int:
        return len(self._queue)

    def running(self) -> int:
        return self._running

    def submit(self, request: GenerationRequest) -> Future[Completion]:
        future: Future[Completion] = Future()
        self._enqueue(Job(request=request, future=future))
        return future

    def submit_stream(self, request: GenerationRequest) -> StreamHandle:
        events: queue.Queue[StreamEvent] = queue.Queue()
        job = Job(request=request, events=events)
        self._enqueue(job)
        return StreamHandle(job, events)

    def _enqueue(self, job: Job) -> None:
        with self._cond:
            if self._stopping:
                raise _shutting_down()
            self._queue.append(job)
            self._cond.notify()

    # -- scheduler thread -----------------------------------------------------------------------

    def _next_batch(self) -> list[Job] | None:
        with self._cond:
            while True:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return None
                first = self._queue.popleft()
                if first.cancelled.is_set():
                    first.fail(ApiError(499, "the client closed the connection", error_type="cancelled"))
                    continue
                break
            batch = [first]
            if first.request.stream or first.request.sampling.seed is not None:
                return batch  # a stream, and a seeded request (its own random generator), run alone
            key = first.request.sampling
            kept: deque[Job] = deque()
            # Same-settings requests may overtake a different one; the oldest waiting request is
            # always taken first on the next turn, so nothing starves.
            for job in self._queue:
                if len(batch) < self.max_batch_size and not job.request.stream and job.request.sampling == key:
                    batch.append(job)
                else:
                    kept.append(job)
            self._queue = kept
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._execute(batch)
            except Exception as exc:  # never let one batch end the loop
                log.exception("scheduler: unexpected failure in a batch of %d", len(batch))
                error = ApiError(500, f"internal error: {type(exc).__name__}: {exc}", error_type="server_error")
                for job in batch:
                    job.fail(error)

    def _prepare(self, batch: list[Job]) -> list[Prepared]:
        prepared: list[Prepared] = []
        for job in batch:
            try:
                prepared.append(self.runner.prepare(job))
            except ApiError as error:
                job.fail(error)
            except Exception as exc:  # a tokenizer or template crash fails this request only
                log.exception("could not prepare a request")
                job.fail(
                    ApiError(500, f"could not build the prompt: {type(exc).__name__}: {exc}", error_type="server_error")
                )
        return prepared

    def _execute(self, batch: list[Job]) -> None:
        prepared = self._prepare(batch)
        if not prepared:
            return
        started = time.monotonic()
        self._running = len(prepared)
        try:
            if prepared[0].job.request.stream:
                self.runner.run_stream(prepared[0])
            else:
                self.runner.run_batch(prepared)
        except Aborted:
            for p in prepared:
                p.job.fail(_shutting_down())
        except Exception as exc:
            log.exception("generate() failed for a batch of %d", len(prepared))
            self.metrics.count_generate_error()
            failure = ApiError(500, f"generation failed: {type(exc).__name__}: {exc}", error_type="server_error")
            for p in prepared:
                p.job.fail(failure)
        finally:
            self._running = 0
            seconds = time.monotonic() - started
            self.metrics.observe_generate(len(prepared), seconds)
            log.debug("generate: batch of %d in %.2f s", len(prepared), seconds)
