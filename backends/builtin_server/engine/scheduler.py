"""The scheduler: one thread owns the model and decodes every admitted request one token per step.

HTTP threads only enqueue a :class:`Job` and wait on its Future (or read its event queue, for a
stream). Each turn of the loop admits newcomers into the KV store (``kv_store.py``: each prompt
behind its longest cached prefix, the turn's prefill work in one forward pass within a per-turn
token allowance, a long prompt a chunk per turn), decodes one token for every running row, lets
each row pick its own token (``sampling.RowSampler``: its own settings, seed and grammar), and
retires the rows that are done: their KV stays in the prefix cache for the next turn of their
conversation. Streams and plain requests share the same steps. Above the budget requests wait in a
bounded queue; past that they get a 503 with Retry-After. Nothing a request does can end the loop:
a failure resolves that request.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import torch

from backends.builtin_server.engine.jobs import (
    Choice,
    Completion,
    Job,
    StreamEvent,
    StreamFinished,
    StreamHandle,
    StreamStarted,
)
from backends.builtin_server.engine.kv_store import KvStore, Prefilled, Wait
from backends.builtin_server.engine.memory import kv_tokens_per_gib
from backends.builtin_server.engine.metrics import Metrics
from backends.builtin_server.engine.output_head import pack_output_head
from backends.builtin_server.engine.prompts import Prepared, PromptBuilder
from backends.builtin_server.engine.request import (
    GREEDY,
    ChatMessage,
    GenerationRequest,
    TokenBudget,
    generation_defaults,
)
from backends.builtin_server.engine.rows import Row
from backends.builtin_server.engine.sampling import RowSampler
from backends.builtin_server.engine.stores import choose_store
from backends.builtin_server.errors import ApiError

log = logging.getLogger("modelserve.server")

# Prompt tokens (padding included) prefilled per turn: that forward pass stalls every running
# row once, so it is bounded (SmolLM2-135M on 2 cores: ~0.3 s for 192 tokens). Newcomers past it
# wait a turn (the first of a crowd get their first token sooner); one prompt longer than it is
# prefilled a chunk of this size per turn.
PREFILL_TOKENS_PER_TURN = 192
# An idle engine waits this long after a first arrival for others to prefill with it: requests
# that come together (agents fanning out) then share one prefill instead of queueing behind a
# lone one. It delays a lone request by as much, ~0.5% of a 64-token reply here.
IDLE_GATHER_S = 0.02


def _shutting_down() -> ApiError:
    return ApiError(503, "the server is shutting down; retry shortly", error_type="server_error", retry_after=5)


@dataclass(eq=False)
class _Request:
    """A job being decoded: its rows, and the choices of those already done."""

    job: Job
    prepared: Prepared
    rows: list[Row]
    cached_tokens: int = 0  # prompt tokens whose KV came from the prefix cache
    choices: dict[int, Choice] = field(default_factory=dict)


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
        kv_budget_tokens: int | None = None,
        max_queue: int = 256,
        prefix_cache: bool = True,
        prefill_tokens_per_step: int | None = None,
    ) -> None:
        self.max_batch_size = max_batch_size
        self.limit = max_new_tokens_limit
        self.max_queue = max_queue
        self.model = model
        self.metrics = metrics or Metrics()
        self.defaults = generation_defaults(getattr(model, "generation_config", None))
        self.prompts = PromptBuilder(model, tokenizer, limit=self.limit, tool_parser=tool_parser)
        # Without a setting (tests, embedding): a quarter of a GiB of cache per row. The server's
        # command line passes --kv-budget-tokens or default_kv_budget(), from free memory.
        self.kv_budget = kv_budget_tokens or max_batch_size * kv_tokens_per_gib(model) // 4
        self._cond = threading.Condition()
        self._queue: deque[Job] = deque()
        self._stopping = False
        self._abort = threading.Event()  # set on shutdown: running rows end at the next step
        pack_output_head(model)
        self.store: KvStore = choose_store(model, budget=self.kv_budget, max_rows=max_batch_size,
                                           turn_tokens=prefill_tokens_per_step or PREFILL_TOKENS_PER_TURN, prefix_cache=prefix_cache,
                                           context=self.prompts.context)  # fmt: skip
        self.rows: list[Row] = []  # decoding, in the store's row order
        self._prefilling: list[Prepared] = []  # taken by the store, prompt not complete yet
        self._prepared: dict[int, Prepared] = {}  # id(job) -> its tokenised prompt, while it waits
        self._requests: dict[int, _Request] = {}  # id(job) -> its rows
        self.steps = 0  # decoding steps begun (tests and the log count compute by them)
        self.metrics.watch(running=lambda: len(self.rows), queue_depth=self.queue_depth,
                           kv_tokens=lambda: self.store.row_tokens, kv_allocated=lambda: self.store.tokens,
                           kv_budget=self.kv_budget)  # fmt: skip
        self.metrics.watch_prefix_cache(self.store)
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
        return len(self.rows)

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
        if job.request.n > self.max_batch_size:
            raise ApiError(400, f"n must be <= {self.max_batch_size} here (each choice is a row of the batch, "
                                f"--max-batch-size), got {job.request.n}", param="n")  # fmt: skip
        with self._cond:
            if self._stopping:
                raise _shutting_down()
            if len(self._queue) >= self.max_queue:
                self.metrics.rejected.inc()
                raise ApiError(503, f"the server is at capacity ({len(self.rows)} requests decoding, "
                                    f"{len(self._queue)} waiting); retry shortly", error_type="server_error",
                               retry_after=max(1, len(self._queue) // max(1, self.max_batch_size)))  # fmt: skip
            self._queue.append(job)
            self._cond.notify()

    # -- scheduler thread -----------------------------------------------------------------------

    def _loop(self) -> None:
        # Every tensor the scheduler makes (the KV store's too) is an inference tensor, made and
        # changed on this thread only.
        with torch.inference_mode():
            self._run()

    def _run(self) -> None:
        while self._wait_for_work():
            try:
                self._admit()
                if self.rows:
                    self._step()
            except Exception as exc:  # never let one step end the loop
                log.exception("scheduler: a decoding step failed; failing its %d row(s)", len(self.rows))
                self.metrics.generate_errors.inc()
                self._fail_all(ApiError(500, f"generation failed: {type(exc).__name__}: {exc}",
                                        error_type="server_error"))  # fmt: skip
        self._fail_all(_shutting_down())

    def _wait_for_work(self) -> bool:
        """Block until something is queued, prefilling or running; False once the server stops."""
        with self._cond:
            while not self._queue and not self.rows and not self._prefilling and not self._stopping:
                self._cond.wait()
            return not self._stopping

    def _admit(self) -> None:
        """One prefill pass per turn: the next chunks of prompts already taken, and newcomers."""
        if not self.rows and not self._prefilling:
            self._gather_arrivals()
        self._drop_cancelled_prompts()
        self.store.continuing()
        self._take_newcomers()
        if not self._prefilling:
            return
        try:
            started = time.monotonic()
            done = self.store.prefill()
            log.debug("prefill: %d prompt(s) in %.3f s, %d row(s) decoding", len(self._prefilling), time.monotonic() - started, len(self.rows))
        except Exception as exc:  # fails the prompts of this pass; the running rows go on
            log.exception("scheduler: prefill failed for %d request(s)", len(self._prefilling))
            self.metrics.generate_errors.inc()
            for p in list(self._prefilling):
                self._drop_prompt(p, ApiError(500, f"generation failed: {type(exc).__name__}: {exc}",
                                              error_type="server_error"))  # fmt: skip
            return
        for prefilled in done:
            self._join(prefilled)

    def _take_newcomers(self) -> None:
        """Queued jobs in order, while the store takes them; one whose prefix another prompt is
        computing now waits for it without holding up the jobs behind it."""
        with self._cond:
            waiting = list(self._queue)
        for job in waiting:
            if job.cancelled.is_set():
                self._unqueue(job)
                job.fail(ApiError(499, "the client closed the connection", error_type="cancelled"))
                continue
            rows = len(self.rows) + self.store.prefilling()
            if rows + job.request.n > self.max_batch_size:
                return
            prepared = self._prepared.get(id(job)) or self._prepare(job)
            if prepared is None:
                self._unqueue(job)
                continue
            self._prepared[id(job)] = prepared
            try:
                taken = self.store.offer(prepared, rows=rows)
            except ApiError as error:  # it could never fit
                self._unqueue(job)
                job.fail(error)
                continue
            if taken is Wait.ROOM:
                return
            if taken is Wait.PREFIX:
                continue
            self._unqueue(job)
            self._prefilling.append(prepared)
            self.metrics.prompt_tokens.inc(len(prepared.ids))
            job.emit(StreamStarted(prompt_tokens=len(prepared.ids)))

    def _unqueue(self, job: Job) -> None:
        with self._cond:
            self._queue.remove(job)
        self._prepared.pop(id(job), None)

    def _drop_cancelled_prompts(self) -> None:
        for p in [p for p in self._prefilling if p.job.cancelled.is_set()]:
            self._drop_prompt(p, ApiError(499, "the client closed the connection", error_type="cancelled"))

    def _drop_prompt(self, prepared: Prepared, error: ApiError) -> None:
        self.store.drop_prefill(prepared)
        self._prefilling.remove(prepared)
        prepared.job.fail(error)

    def _gather_arrivals(self) -> None:
        deadline = time.monotonic() + IDLE_GATHER_S
        with self._cond:
            while len(self._queue) < self.max_batch_size and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(left)

    def _prepare(self, job: Job) -> Prepared | None:
        try:
            return self.prompts.prepare(job)
        except ApiError as error:
            job.fail(error)
        except Exception as exc:  # a tokenizer or template crash fails this request only
            log.exception("could not prepare a request")
            job.fail(ApiError(500, f"could not build the prompt: {type(exc).__name__}: {exc}",
                              error_type="server_error"))  # fmt: skip
        return None

    def _join(self, done: Prefilled) -> None:
        """A request's first tokens from its prompt's logits, then its rows join the batch;
        rows done after their first token never join."""
        p = done.prepared
        self._prefilling.remove(p)
        if done.cached_tokens:
            self.metrics.prefix_hits.inc()
            self.metrics.prefix_hit_tokens.inc(done.cached_tokens)
        seed = p.job.request.sampling.seed
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        entry = _Request(p.job, p, [], cached_tokens=done.cached_tokens)
        self._requests[id(p.job)] = entry
        firsts: list[int] = []
        joining: list[Row] = []
        for k in range(p.job.request.n):
            row = self._row(p, k, generator)
            token = row.advance(done.logits)
            if row.done:
                self._finish_row(entry, row)
                continue
            entry.rows.append(row)
            firsts.append(token)
            joining.append(row)
        self.store.join(done, firsts)
        self.rows += joining

    def _row(self, p: Prepared, choice: int, generator: torch.Generator | None) -> Row:
        request = p.job.request
        matcher = self.prompts.grammars.matcher(p.grammar) if p.grammar else None
        sampler = RowSampler(request.sampling, self.prompts.eos_ids, p.max_new, prompt=p.ids, matcher=matcher,
                             grammars=self.prompts.grammars, top_logprobs=request.logprobs, generator=generator)  # fmt: skip
        return Row(p.job, choice, len(p.ids), p.max_new, sampler, self.prompts.decode, self.prompts.eos_ids,
                   self.prompts.describe, p.parser, started=p.job.arrived)  # fmt: skip

    def _step(self) -> None:
        started = time.monotonic()
        self.steps += 1
        self.metrics.step_rows.observe(len(self.rows))
        logits = self.store.step()
        tokens = []
        for i, row in enumerate(self.rows):
            before = row.last_token_at
            tokens.append(row.advance(logits[i]))
            if before is not None and row.last_token_at is not None:
                self.metrics.itl.observe(row.last_token_at - before)
        self.store.advance(tokens)
        self._retire()
        log.debug("step: %d rows in %.3f s", len(tokens), time.monotonic() - started)

    def _retire(self) -> None:
        """Done rows leave the batch (and free their cache) before their clients hear of it, so
        what a client sees next (/metrics, its next request) never counts them."""
        done: list[int] = []
        for i, row in enumerate(self.rows):
            if not row.done and (row.job.cancelled.is_set() or self._abort.is_set()):
                row.cancel()
                if not self._abort.is_set():
                    log.info("client went away after %d token(s); its row left the batch", len(row.ids))
            if row.done:
                done.append(i)
        if not done:
            return
        finished = [self.rows[i] for i in done]
        order = self.store.retire(done)
        self.rows = [self.rows[i] for i in order]
        for row in finished:
            self._finish_row(self._requests[id(row.job)], row)

    def _finish_row(self, entry: _Request, row: Row) -> None:
        if row.first_token_at is not None and not entry.choices:
            self.metrics.ttft.observe(row.first_token_at - entry.job.arrived)
        self.metrics.completion_tokens.inc(row.completion_tokens)
        if row.reason == "failed":
            self.metrics.generate_errors.inc()
        if self._abort.is_set():
            entry.job.fail(_shutting_down())  # cut short by shutdown: a partial answer would look like a real one
        entry.choices[row.choice] = row.finish()
        if len(entry.choices) < entry.job.request.n:
            return
        self._requests.pop(id(entry.job), None)
        done = Completion(len(entry.prepared.ids), tuple(entry.choices[k] for k in sorted(entry.choices)),
                          cached_tokens=entry.cached_tokens)  # fmt: skip
        entry.job.succeed(done)
        entry.job.emit(StreamFinished(done.finish_reason, done.prompt_tokens, done.completion_tokens,
                                      cached_tokens=entry.cached_tokens))  # fmt: skip

    def _fail_all(self, error: ApiError) -> None:
        for p in self._prefilling:
            p.job.fail(error)
        for row in self.rows:
            row.job.fail(error)
        for entry in self._requests.values():  # one failing mid-join has no row in self.rows yet
            entry.job.fail(error)
        self.store.clear()
        self.rows, self._requests, self._prefilling = [], {}, []
