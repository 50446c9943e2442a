"""One generate() call for the jobs the scheduler picked: tokenise, run, cut each row, resolve.

Everything here runs on the scheduler thread, which alone owns the model and the tokenizer (HF
fast tokenizers raise "Already borrowed" when two threads use them at once). A batch is
left-padded into one ``generate`` call and every row is cut at its own eos / stop string / token
budget; a stream runs alone, with a sink that turns tokens into text deltas as they come.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import GenerationConfig, StoppingCriteriaList

from backends.flask_server.errors import ApiError
from backends.flask_server.generate_hooks import BatchStopper, StreamSink, StreamStopper
from backends.flask_server.generation import ChatMessage, Sampling, fallback_prompt, find_stop, resolve_max_new_tokens
from backends.flask_server.jobs import Completion, Job, StreamFinished, StreamStarted
from backends.flask_server.metrics import Metrics

log = logging.getLogger("modelserve.flask_server")


class Aborted(Exception):
    """generate() returned early because the server is shutting down."""


@dataclass(frozen=True)
class Prepared:
    """A job whose prompt is tokenised and whose token budget is known."""

    job: Job
    ids: list[int]
    max_new: int


class ModelRunner:
    def __init__(self, model: Any, tokenizer: Any, *, limit: int, metrics: Metrics, abort: threading.Event) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self._limit = limit
        self._metrics = metrics
        # Set on shutdown: every stopping criterion answers "stop" at the next step.
        self._abort = abort
        # Read every tokenizer / config attribute here, before the scheduler thread owns them.
        self.eos_ids = _eos_ids(model, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_id: int = pad if pad is not None else (min(self.eos_ids) if self.eos_ids else 0)
        self.context = _context_length(model, tokenizer)
        self.has_chat_template = bool(getattr(tokenizer, "chat_template", None))

    # -- the prompt -----------------------------------------------------------------------------

    def prepare(self, job: Job) -> Prepared:
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
        max_new = resolve_max_new_tokens(
            request.budget, prompt_tokens=len(ids), context=self.context, limit=self._limit
        )
        return Prepared(job=job, ids=ids, max_new=max_new)

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

    def decode(self, ids: Sequence[int]) -> str:
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

    # -- a batch --------------------------------------------------------------------------------

    def run_batch(self, prepared: list[Prepared]) -> None:
        width = max(len(p.ids) for p in prepared)
        rows = len(prepared)
        input_ids = torch.full((rows, width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((rows, width), dtype=torch.long)
        for i, p in enumerate(prepared):
            # Left padding: every row's last prompt token sits in the last column.
            input_ids[i, width - len(p.ids) :] = torch.tensor(p.ids, dtype=torch.long)
            attention[i, width - len(p.ids) :] = 1
        stopper = BatchStopper(
            decode=self.decode,
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
            raise Aborted  # cut short by shutdown: a partial answer would look like a real one
        for i, p in enumerate(prepared):
            text, count, reason = self.finish_row(output[i, width:].tolist(), p.max_new, p.job.request.stop)
            self._metrics.count_tokens(len(p.ids), count)
            p.job.succeed(Completion(text, len(p.ids), count, reason))

    def finish_row(self, new_ids: list[int], max_new: int, stops: Sequence[str]) -> tuple[str, int, str]:
        """One row of a batched output -> (text, completion tokens, finish_reason)."""
        ids = new_ids[:max_new]
        reason = "length"
        for k, token in enumerate(ids):
            # Tokens after a row's eos are padding written while other rows kept going.
            if token in self.eos_ids:
                ids, reason = ids[:k], "stop"
                break
        text = self.decode(ids)
        at = find_stop(text, stops) if stops else None
        if at is not None:
            text, reason = text[:at], "stop"
            # Count the tokens generated up to the one that completed the stop string.
            for k in range(1, len(ids) + 1):
                if find_stop(self.decode(ids[:k]), stops) is not None:
                    ids = ids[:k]
                    break
        return text, len(ids), reason

    # -- a stream -------------------------------------------------------------------------------

    def run_stream(self, p: Prepared) -> None:
        job = p.job
        job.emit(StreamStarted(prompt_tokens=len(p.ids)))
        sink = StreamSink(
            decode=self.decode,
            eos_ids=self.eos_ids,
            stops=job.request.stop,
            max_new=p.max_new,
            emit=job.emit,
        )
        stopper = StreamStopper(sink=sink, cancelled=job.cancelled, abort=self._abort)
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
            raise Aborted
        sink.flush()
        if job.cancelled.is_set():
            log.info("stream: client went away after %d tokens; generation stopped", sink.count)
        self._metrics.count_tokens(len(p.ids), sink.count)
        job.emit(StreamFinished(sink.reason, len(p.ids), sink.count))


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
