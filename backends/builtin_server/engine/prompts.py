"""A request's prompt as token ids, its token budget, and how its reply is read.

Runs on the scheduler thread, which alone owns the tokenizer (HF fast tokenizers raise "Already
borrowed" when two threads use them at once): chat messages go through the model's chat template
(with tools when the model's family has a tool format, else the generic instructions), the budget
is checked against the context window, and a reply that must be a call or JSON gets its grammar.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from backends.builtin_server.engine.jobs import Job, TokenLogprob
from backends.builtin_server.engine.request import ChatMessage, fallback_prompt, resolve_max_new_tokens
from backends.builtin_server.engine.sampling import Pick
from backends.builtin_server.engine.tool_prompt import template_messages
from backends.builtin_server.errors import ApiError
from backends.builtin_server.tools.constraints import Grammars, response_schema, tool_calls_schema
from backends.builtin_server.tools.parsers import PARSERS, ToolParser
from backends.builtin_server.tools.spec import ToolRequest

log = logging.getLogger("modelserve.server")


@dataclass(frozen=True)
class Prepared:
    """A job whose prompt is tokenised, whose token budget is known, and whose reply is read by
    ``parser`` (tools offered) and held to ``grammar`` (a forced call, a JSON reply)."""

    job: Job
    ids: list[int]
    max_new: int
    parser: ToolParser | None = None
    grammar: str | None = None  # each of the request's rows gets its own matcher of it

    @property
    def tools(self) -> ToolRequest | None:
        return self.job.request.tools


class PromptBuilder:
    def __init__(self, model: Any, tokenizer: Any, *, limit: int, tool_parser: str = "generic") -> None:
        self._tokenizer = tokenizer
        self._limit = limit
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
        return Prepared(job, ids, max_new, parser, grammar)

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

    def describe(self, pick: Pick) -> TokenLogprob:
        """A token and its alternatives the way OpenAI's logprobs show them: text and UTF-8 bytes."""

        def text(token: int) -> tuple[str, tuple[int, ...]]:
            piece = self.decode([token])
            return piece, tuple(piece.encode())

        top = tuple((piece, logprob, raw) for t, logprob in pick.top for piece, raw in [text(t)])
        token, raw = text(pick.token)
        return TokenLogprob(token, pick.logprob, raw, top)


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
