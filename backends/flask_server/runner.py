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
from transformers import (
    GenerationConfig,
    LogitsProcessorList,
    StoppingCriteriaList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from backends.flask_server.errors import ApiError
from backends.flask_server.generate_hooks import BatchStopper, LogitBias, OpenAIPenalties, StreamSink, StreamStopper
from backends.flask_server.generation import ChatMessage, Sampling, fallback_prompt, find_stop, resolve_max_new_tokens
from backends.flask_server.jobs import Completion, Job, StreamFinished, StreamStarted
from backends.flask_server.metrics import Metrics
from backends.flask_server.tools.constraints import Grammars, RowConstraints, response_schema, tool_calls_schema
from backends.flask_server.tools.parsers import PARSERS, ToolParser
from backends.flask_server.tools.prompt import template_messages
from backends.flask_server.tools.spec import ToolRequest
from backends.flask_server.tools.stream import ToolStream

log = logging.getLogger("modelserve.flask_server")


class Aborted(Exception):
    """generate() returned early because the server is shutting down."""


@dataclass(frozen=True)
class Prepared:
    """A job whose prompt is tokenised, whose token budget is known, and whose reply is read by
    ``parser`` (tools offered) and held to ``matcher``'s grammar (a forced call, a JSON reply)."""

    job: Job
    ids: list[int]
    max_new: int
    parser: ToolParser | None = None
    matcher: Any = None  # llguidance.LLMatcher

    @property
    def tools(self) -> ToolRequest | None:
        return self.job.request.tools


class ModelRunner:
    def __init__(self, model: Any, tokenizer: Any, *, limit: int, metrics: Metrics, abort: threading.Event,
                 tool_parser: str = "generic") -> None:  # fmt: skip
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
        # The model family's own tool-call format ("generic": it has none; see tools/); "none": no tools.
        self.tools_off = tool_parser == "none"
        self.tool_parser = PARSERS["generic" if self.tools_off else tool_parser]
        vocab = int(getattr(model.config, "vocab_size", 0) or len(tokenizer))
        self.grammars = Grammars(tokenizer, vocab_size=vocab, eos_ids=sorted(self.eos_ids))

    # -- the prompt -----------------------------------------------------------------------------

    def prepare(self, job: Job) -> Prepared:
        request = job.request
        if request.messages is not None:
            text, templated = self._render_chat(request.messages, request.tools)
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
        parser, grammar = self._reading(job)
        return Prepared(job, ids, max_new, parser, self.grammars.matcher(grammar) if grammar else None)

    def _reading(self, job: Job) -> tuple[ToolParser | None, str | None]:
        """How the reply is read, and the grammar it is held to (None: free text)."""
        request = job.request
        tools, fmt = request.tools, request.response_format
        if tools is not None and self.tools_off:
            raise ApiError(400, "this deployment serves no tools (its tool_parser is none); leave tools out")
        if tools is not None and (tools.forced or self.tool_parser.name == "generic"):
            # A forced call, or a model with no format of its own: the generic JSON reply, enforced.
            grammar = self.grammars.grammar(tool_calls_schema(tools), lenient=not any(f.strict for f in tools.functions),
                                            where="tools[].function.parameters")  # fmt: skip
            return PARSERS["generic"], grammar
        if tools is not None:
            return self.tool_parser, None
        if fmt is not None:
            where = "response_format.json_schema.schema"
            return None, self.grammars.grammar(response_schema(fmt), lenient=not fmt.strict, where=where)
        return None, None

    def _render_chat(self, messages: Sequence[ChatMessage], tools: ToolRequest | None) -> tuple[str, bool]:
        native = self.tool_parser.name != "generic"
        chat = template_messages(messages, tools, native=native)
        if not self.has_chat_template:
            return fallback_prompt([ChatMessage(m["role"], str(m.get("content") or "")) for m in chat]), False
        import jinja2

        extra = {"tools": [f.for_template() for f in tools.functions]} if native and tools else {}
        try:
            rendered = self._tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True, **extra)
        except jinja2.TemplateError as exc:
            # Templates raise for shapes they refuse ("roles must alternate user/assistant").
            raise ApiError(400, f"the model's chat template rejected these messages: {exc}") from exc
        return str(rendered), True

    def decode(self, ids: Sequence[int]) -> str:
        # No clean-up of tokenization spaces: it can change text already streamed (as in AgentScope's script).
        text: str = self._tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return text

    def _processing(self, sampling: Sampling, max_new: int, prepared: Sequence[Prepared],
                    width: int) -> tuple[GenerationConfig, LogitsProcessorList]:  # fmt: skip
        """generate()'s settings and extra logits processors for these rows (``width``: the
        prompt columns).

        With any extra processor, the sampling warpers run after it (HF runs its own before every
        extra processor: top-p could then keep only tokens a grammar forbids, and a logit_bias
        could not bring back a token top-k already dropped).
        """
        config = self._generation_config(sampling, max_new)
        processors = LogitsProcessorList()
        if sampling.presence_penalty or sampling.frequency_penalty:
            processors.append(OpenAIPenalties(presence=sampling.presence_penalty,
                                              frequency=sampling.frequency_penalty, width=width))  # fmt: skip
        if sampling.logit_bias:
            processors.append(LogitBias(sampling.logit_bias, self.grammars.vocab_size))
        matchers = [p.matcher for p in prepared]
        if any(m is not None for m in matchers):
            eos = min(self.eos_ids) if self.eos_ids else self.pad_id
            budgets = [p.max_new for p in prepared]
            processors.append(RowConstraints(matchers, budgets=budgets, grammars=self.grammars, eos_id=eos))
        if processors and sampling.do_sample:
            if sampling.temperature not in (None, 1.0):
                processors.append(TemperatureLogitsWarper(float(sampling.temperature)))
            if sampling.top_k:
                processors.append(TopKLogitsWarper(int(sampling.top_k)))
            if sampling.top_p is not None and sampling.top_p < 1.0:
                processors.append(TopPLogitsWarper(float(sampling.top_p)))
            config.temperature, config.top_p, config.top_k = 1.0, 1.0, 0
        return config, processors

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
        sampling = prepared[0].job.request.sampling
        config, processors = self._processing(sampling, max(p.max_new for p in prepared), prepared, width)
        if sampling.seed is not None:  # decoded alone (see the engine): this generator is the request's
            torch.manual_seed(sampling.seed)
        with torch.inference_mode():
            output = self._model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                generation_config=config,
                stopping_criteria=StoppingCriteriaList([stopper]),
                logits_processor=processors,
            )
        if self._abort.is_set():
            raise Aborted  # cut short by shutdown: a partial answer would look like a real one
        for i, p in enumerate(prepared):
            text, count, reason = self.finish_row(output[i, width:].tolist(), p.max_new, p.job.request.stop)
            self._metrics.count_tokens(len(p.ids), count)
            if p.parser is not None and p.tools is not None:
                parsed = p.parser.extract(text, p.tools)
                p.job.succeed(Completion(parsed.content, len(p.ids), count, "tool_calls" if parsed.calls else reason,
                                         parsed.calls))  # fmt: skip
            else:
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
            tool_stream=ToolStream(p.parser, p.tools) if p.parser is not None and p.tools is not None else None,
        )
        stopper = StreamStopper(sink=sink, cancelled=job.cancelled, abort=self._abort)
        device = self._model.device
        ids = torch.tensor([p.ids], dtype=torch.long, device=device)
        config, processors = self._processing(job.request.sampling, p.max_new, [p], len(p.ids))
        if job.request.sampling.seed is not None:
            torch.manual_seed(job.request.sampling.seed)
        with torch.inference_mode():
            self._model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                generation_config=config,
                stopping_criteria=StoppingCriteriaList([stopper]),
                logits_processor=processors,
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
