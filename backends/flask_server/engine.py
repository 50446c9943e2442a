"""The scheduler: one thread owns the model and the tokenizer; HTTP threads only enqueue and wait.

Why one thread: HF fast tokenizers raise "Already borrowed" when two threads use them at once, and
AgentScope's original script corrupted generation by calling ``model.generate`` from every Flask
thread. Here an HTTP thread puts a :class:`GenerationRequest` on the queue and waits on a Future
(or, for a stream, reads a per-request event queue). The scheduler takes the oldest waiting request,
drains further queued non-streaming requests with the same sampling settings into one left-padded
``generate`` call, and cuts every row at its own eos / stop string / token budget. A stream runs alone.
Nothing a request does can end the loop: failures resolve that request's future with an error.
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from backends.flask_server.metrics import Metrics
from backends.flask_server.protocol import (
    GREEDY,
    ApiError,
    ChatMessage,
    GenerationDefaults,
    GenerationRequest,
    Sampling,
    TokenBudget,
    fallback_prompt,
    find_stop,
    held_back,
    resolve_max_new_tokens,
)

log = logging.getLogger("modelserve.flask_server")

# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (eos or a stop string) | "length"


@dataclass(frozen=True)
class StreamStarted:
    prompt_tokens: int


@dataclass(frozen=True)
class StreamDelta:
    text: str


@dataclass(frozen=True)
class StreamFinished:
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class StreamFailed:
    error: ApiError


StreamEvent = StreamStarted | StreamDelta | StreamFinished | StreamFailed


@dataclass(eq=False)
class _Job:
    request: GenerationRequest
    future: Future[Completion] | None = None
    events: queue.Queue[StreamEvent] | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    resolved: bool = False

    def succeed(self, completion: Completion) -> None:
        if not self.resolved and self.future is not None:
            self.resolved = True
            self.future.set_result(completion)

    def fail(self, error: ApiError) -> None:
        if self.resolved:
            return
        self.resolved = True
        if self.future is not None:
            self.future.set_exception(error)
        elif self.events is not None:
            self.events.put(StreamFailed(error))

    def emit(self, event: StreamEvent) -> None:
        if self.events is not None and not self.resolved:
            self.events.put(event)
            if isinstance(event, StreamFinished):
                self.resolved = True


class StreamHandle:
    """What an HTTP thread holds for a streaming request."""

    def __init__(self, job: _Job, events: queue.Queue[StreamEvent]) -> None:
        self._job = job
        self._events = events

    def next_event(self) -> StreamEvent:
        # No timeout: the scheduler always ends a stream with StreamFinished or StreamFailed,
        # and stop() fails every queued job.
        return self._events.get()

    def cancel(self) -> None:
        """The client went away: stop generating at the next step."""
        self._job.cancelled.set()


class _Aborted(Exception):
    """generate() returned early because the server is shutting down."""


@dataclass(frozen=True)
class _Prepared:
    job: _Job
    ids: list[int]
    max_new: int


# ----------------------------------------------------------------------------- engine


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


class Engine:
    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_batch_size: int,
        max_new_tokens_limit: int,
        metrics: Metrics | None = None,
    ) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.limit = max_new_tokens_limit
        self.metrics = metrics or Metrics()
        self.metrics.queue_depth = self.queue_depth
        self.metrics.running = self.running
        self._running = 0  # requests inside the current generate() call (a gauge; written by the scheduler only)
        # Read every tokenizer / config attribute here, before the scheduler thread owns them.
        self.eos_ids = _eos_ids(model, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_id: int = pad if pad is not None else (min(self.eos_ids) if self.eos_ids else 0)
        self.context = _context_length(model, tokenizer)
        self.has_chat_template = bool(getattr(tokenizer, "chat_template", None))
        self.defaults = generation_defaults(getattr(model, "generation_config", None))
        self._cond = threading.Condition()
        self._queue: deque[_Job] = deque()
        self._stopping = False
        # Set on shutdown: every stopping criterion answers "stop" at the next step.
        self._abort = threading.Event()
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
            job.fail(ApiError(503, "the server is shutting down; retry shortly", error_type="server_error"))
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
        self._enqueue(_Job(request=request, future=future))
        return future

    def submit_stream(self, request: GenerationRequest) -> StreamHandle:
        events: queue.Queue[StreamEvent] = queue.Queue()
        job = _Job(request=request, events=events)
        self._enqueue(job)
        return StreamHandle(job, events)

    def _enqueue(self, job: _Job) -> None:
        with self._cond:
            if self._stopping:
                raise ApiError(503, "the server is shutting down; retry shortly", error_type="server_error")
            self._queue.append(job)
            self._cond.notify()

    # -- scheduler thread -----------------------------------------------------------------------

    def _next_batch(self) -> list[_Job] | None:
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
            if first.request.stream:
                return batch
            key = first.request.sampling
            kept: deque[_Job] = deque()
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

    def _execute(self, batch: list[_Job]) -> None:
        prepared: list[_Prepared] = []
        for job in batch:
            try:
                prepared.append(self._prepare(job))
            except ApiError as error:
                job.fail(error)
            except Exception as exc:  # a tokenizer or template crash fails this request only
                log.exception("could not prepare a request")
                job.fail(
                    ApiError(500, f"could not build the prompt: {type(exc).__name__}: {exc}", error_type="server_error")
                )
        if not prepared:
            return
        started = time.monotonic()
        self._running = len(prepared)
        try:
            if prepared[0].job.request.stream:
                self._run_stream(prepared[0])
            else:
                self._run_batch(prepared)
        except _Aborted:
            for p in prepared:
                p.job.fail(ApiError(503, "the server is shutting down; retry shortly", error_type="server_error"))
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

    def _prepare(self, job: _Job) -> _Prepared:
        request = job.request
        if request.messages is not None:
            text, templated = self._render_chat(request.messages)
        else:
            text, templated = request.prompt or "", False
        # A chat template already writes bos where the model wants it; adding special tokens
        # again would double it (HF's own apply_chat_template(tokenize=True) does the same).
        ids: list[int] = list(self._tokenizer(text, add_special_tokens=not templated)["input_ids"])
        if not ids:
            raise ApiError(400, "the prompt tokenises to nothing; send some text")
        max_new = resolve_max_new_tokens(request.budget, prompt_tokens=len(ids), context=self.context, limit=self.limit)
        return _Prepared(job=job, ids=ids, max_new=max_new)

    def _render_chat(self, messages: Sequence[ChatMessage]) -> tuple[str, bool]:
        if not self.has_chat_template:
            return fallback_prompt(messages), False
        import jinja2

        try:
            rendered = self._tokenizer.apply_chat_template(
                [m.for_template() for m in messages], tokenize=False, add_generation_prompt=True
            )
        except jinja2.TemplateError as exc:
            # Templates raise for shapes they refuse ("roles must alternate user/assistant").
            raise ApiError(400, f"the model's chat template rejected these messages: {exc}") from exc
        return str(rendered), True

    def _decode(self, ids: Sequence[int]) -> str:
        # No clean-up of tokenization spaces: it can change text already streamed (as in AgentScope's script).
        text: str = self._tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return text

    def _generation_config(self, sampling: Sampling, max_new: int) -> GenerationConfig:
        base = getattr(self._model, "generation_config", None)
        config = copy.deepcopy(base) if base is not None else GenerationConfig()  # type: ignore[no-untyped-call]
        config.max_new_tokens = max_new
        config.min_new_tokens = sampling.min_new_tokens or None
        config.num_beams = 1
        config.num_return_sequences = 1
        config.do_sample = sampling.do_sample
        config.repetition_penalty = sampling.repetition_penalty
        config.pad_token_id = self.pad_id
        config.eos_token_id = sorted(self.eos_ids) or None
        if sampling.do_sample:
            config.temperature = sampling.temperature
            config.top_p = sampling.top_p
            config.top_k = sampling.top_k
        else:
            # HF's neutral values: anything else makes generate() warn that greedy ignores it.
            config.temperature, config.top_p, config.top_k = 1.0, 1.0, 50
        return config

    def _run_batch(self, prepared: list[_Prepared]) -> None:
        width = max(len(p.ids) for p in prepared)
        rows = len(prepared)
        input_ids = torch.full((rows, width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((rows, width), dtype=torch.long)
        for i, p in enumerate(prepared):
            # Left padding: every row's last prompt token sits in the last column.
            input_ids[i, width - len(p.ids) :] = torch.tensor(p.ids, dtype=torch.long)
            attention[i, width - len(p.ids) :] = 1
        stopper = _BatchStopper(
            decode=self._decode,
            width=width,
            max_new=[p.max_new for p in prepared],
            stops=[p.job.request.stop for p in prepared],
            eos_ids=self.eos_ids,
            abort=self._abort,
        )
        device = self._model.device
        config = self._generation_config(prepared[0].job.request.sampling, max(p.max_new for p in prepared))
        with torch.inference_mode():
            output = self._model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                generation_config=config,
                stopping_criteria=StoppingCriteriaList([stopper]),
            )
        if self._abort.is_set():
            raise _Aborted  # cut short by shutdown: a partial answer would look like a real one
        for i, p in enumerate(prepared):
            text, count, reason = self._finish(output[i, width:].tolist(), p.max_new, p.job.request.stop)
            self.metrics.count_tokens(len(p.ids), count)
            p.job.succeed(Completion(text, len(p.ids), count, reason))

    def _finish(self, new_ids: list[int], max_new: int, stops: Sequence[str]) -> tuple[str, int, str]:
        """One row of a batched output -> (text, completion tokens, finish_reason)."""
        ids = new_ids[:max_new]
        reason = "length"
        for k, token in enumerate(ids):
            # Tokens after a row's eos are padding written while other rows kept going.
            if token in self.eos_ids:
                ids, reason = ids[:k], "stop"
                break
        text = self._decode(ids)
        at = find_stop(text, stops) if stops else None
        if at is not None:
            text, reason = text[:at], "stop"
            # Count the tokens generated up to the one that completed the stop string.
            for k in range(1, len(ids) + 1):
                if find_stop(self._decode(ids[:k]), stops) is not None:
                    ids = ids[:k]
                    break
        return text, len(ids), reason

    def _run_stream(self, p: _Prepared) -> None:
        job = p.job
        job.emit(StreamStarted(prompt_tokens=len(p.ids)))
        sink = _StreamSink(
            decode=self._decode,
            eos_ids=self.eos_ids,
            stops=job.request.stop,
            max_new=p.max_new,
            emit=job.emit,
        )
        stopper = _StreamStopper(sink=sink, cancelled=job.cancelled, abort=self._abort)
        device = self._model.device
        ids = torch.tensor([p.ids], dtype=torch.long, device=device)
        with torch.inference_mode():
            self._model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                generation_config=self._generation_config(job.request.sampling, p.max_new),
                stopping_criteria=StoppingCriteriaList([stopper]),
                streamer=sink,
            )
        if self._abort.is_set():
            raise _Aborted
        sink.flush()
        if job.cancelled.is_set():
            log.info("stream: client went away after %d tokens; generation stopped", sink.count)
        self.metrics.count_tokens(len(p.ids), sink.count)
        job.emit(StreamFinished(sink.reason, len(p.ids), sink.count))


# ----------------------------------------------------------------------------- generate() hooks


class _BatchStopper(StoppingCriteria):
    """Per-row stop: its own token budget, its own stop strings, or a shutdown."""

    def __init__(
        self,
        *,
        decode: Callable[[Sequence[int]], str],
        width: int,
        max_new: list[int],
        stops: list[tuple[str, ...]],
        eos_ids: frozenset[int],
        abort: threading.Event,
    ) -> None:
        self.decode = decode
        self.width = width
        self.max_new = max_new
        self.stops = stops
        self.eos_ids = eos_ids
        self.abort = abort
        self.done = [False] * len(max_new)

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        if self.abort.is_set():
            self.done = [True] * len(self.done)
        new_len = input_ids.shape[1] - self.width
        for i, done in enumerate(self.done):
            if not done:
                self.done[i] = self._row_done(i, input_ids[i], new_len)
        result: torch.BoolTensor = torch.tensor(self.done, dtype=torch.bool, device=input_ids.device)  # type: ignore[assignment]
        return result

    def _row_done(self, i: int, row: torch.Tensor, new_len: int) -> bool:
        if new_len >= self.max_new[i] or int(row[-1]) in self.eos_ids:
            return True
        # Decoding every step is cheap next to a forward pass, and only rows with stop strings pay it.
        return bool(self.stops[i]) and find_stop(self.decode(row[self.width :].tolist()), self.stops[i]) is not None


class _StreamSink(BaseStreamer):
    """A BaseStreamer for one row: turns token ids into text deltas, holding back possible stop strings."""

    def __init__(
        self,
        *,
        decode: Callable[[Sequence[int]], str],
        eos_ids: frozenset[int],
        stops: tuple[str, ...],
        max_new: int,
        emit: Callable[[StreamEvent], None],
    ) -> None:
        self.decode = decode
        self.eos_ids = eos_ids
        self.stops = stops
        self.max_new = max_new
        self.emit = emit
        self.ids: list[int] = []
        self.sent = 0  # characters already emitted
        self.prompt_seen = False
        self.finished = False
        self.stopped_by_string = False
        self.reason = "length"

    @property
    def count(self) -> int:
        return len(self.ids)

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # generate() first hands over the prompt
            self.prompt_seen = True
            return
        for token in value.reshape(-1).tolist():
            if self.finished:
                return
            self._add(int(token))

    def end(self) -> None:
        """generate() is done; the engine calls flush() itself after it returns."""

    def _add(self, token: int) -> None:
        if token in self.eos_ids:
            self.finished, self.reason = True, "stop"
            return
        self.ids.append(token)
        text = self.decode(self.ids)
        at = find_stop(text, self.stops) if self.stops else None
        if at is not None:
            self._send(text[:at])
            self.finished, self.reason, self.stopped_by_string = True, "stop", True
            return
        end = len(text) - held_back(text, self.stops)
        if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
            end = min(end, len(text) - 1)
        self._send(text[:end])
        if len(self.ids) >= self.max_new:
            self.finished, self.reason = True, "length"

    def _send(self, text: str) -> None:
        if len(text) > self.sent:
            self.emit(StreamDelta(text[self.sent :]))
            self.sent = len(text)

    def flush(self) -> None:
        if not self.stopped_by_string:
            self._send(self.decode(self.ids))


class _StreamStopper(StoppingCriteria):
    def __init__(self, *, sink: _StreamSink, cancelled: threading.Event, abort: threading.Event) -> None:
        self.sink = sink
        self.cancelled = cancelled
        self.abort = abort

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        stop = self.sink.finished or self.cancelled.is_set() or self.abort.is_set()
        result: torch.BoolTensor = torch.full(  # type: ignore[assignment]
            (input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device
        )
        return result


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif isinstance(configured, list | tuple):
        ids.update(int(i) for i in configured)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return frozenset(ids)


def _context_length(model: Any, tokenizer: Any) -> int | None:
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    # Tokenizers without a real limit report a huge sentinel (int(1e30)).
    value = getattr(tokenizer, "model_max_length", None)
    if isinstance(value, int) and 0 < value < 10_000_000:
        return value
    return None
