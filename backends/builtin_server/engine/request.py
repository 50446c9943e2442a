"""What the HTTP side hands the scheduler, and the rules that need the prompt's token count.

A :class:`GenerationRequest` is a validated request: routes build one (protocol.py), the engine
runs it. Nothing here imports torch, transformers, Flask or pydantic. The checks that depend on the
prompt's length (context window, ``max_length``) live in :func:`resolve_max_new_tokens`, which the
scheduler thread calls once it has tokenised the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from backends.builtin_server.errors import ApiError
from backends.builtin_server.tools.spec import ResponseFormat, ToolCall, ToolRequest

DEFAULT_CHAT_MAX_NEW_TOKENS = 512
# OpenAI's documented default for /v1/completions.
DEFAULT_COMPLETION_MAX_NEW_TOKENS = 16


@dataclass(frozen=True)
class ChatMessage:
    """One message as the scheduler sees it: content already flattened to text."""

    role: str
    content: str
    # Only the no-template fallback uses it ("{name}: {content}"), as AgentScope's script did.
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant turn's calls
    tool_call_id: str | None = None  # a tool turn: the call it answers

    def for_template(self) -> dict[str, Any]:
        """OpenAI's shape, which chat templates that know tools read (arguments as an object)."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.name, "arguments": c.arguments_object()}}
                                 for c in self.tool_calls]  # fmt: skip
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


@dataclass(frozen=True)
class Sampling:
    """The settings that must be equal for requests to share one batched generate() call."""

    do_sample: bool
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float = 1.0
    # The min-new-tokens processor acts on the whole batch, so it is part of the key too.
    min_new_tokens: int = 0
    # OpenAI's additive penalties (by how often / whether a token was generated already).
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias added to its logit)
    # A seeded request is decoded alone with its own generator: the same seed, the same reply.
    seed: int | None = None


GREEDY = Sampling(do_sample=False)


@dataclass(frozen=True)
class TokenBudget:
    """How many new tokens the caller asked for, before the prompt length is known."""

    field: str  # the key the client used, named in error messages
    max_new_tokens: int | None = None
    max_length: int | None = None  # HF meaning: prompt + new tokens
    default: int = DEFAULT_CHAT_MAX_NEW_TOKENS


@dataclass(frozen=True)
class GenerationDefaults:
    """Sampling defaults for /llm/, taken from the model's generation_config (HF generate() meaning)."""

    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 50
    repetition_penalty: float = 1.0


@dataclass(frozen=True)
class GenerationRequest:
    """A validated request, as the scheduler sees it: exactly one of ``messages`` / ``prompt``."""

    sampling: Sampling
    budget: TokenBudget
    messages: tuple[ChatMessage, ...] | None = None
    prompt: str | None = None
    stop: tuple[str, ...] = ()
    stream: bool = False
    tools: ToolRequest | None = None  # offered tools, unless tool_choice was "none"
    response_format: ResponseFormat | None = None  # JSON the reply must be
    n: int = 1  # replies to the same prompt (each decodes as its own row)
    logprobs: int | None = None  # None: none; k: each token's logprob and its k likeliest alternatives
    include_usage: bool = False


def fallback_prompt(messages: Sequence[ChatMessage]) -> str:
    """The prompt for a tokenizer without a chat template, as AgentScope's original script built it."""
    lines = "".join(f"{m.name or m.role}: {m.content}\n" for m in messages)
    return lines + "assistant: "


# ----------------------------------------------------------------------------- token budget


def resolve_max_new_tokens(budget: TokenBudget, *, prompt_tokens: int, context: int | None, limit: int) -> int:
    """The number of new tokens to generate, once the prompt length is known.

    An explicit count that does not fit is the caller's error (400 naming the field); defaults and
    ``max_length`` conversions are capped silently, as HF and vLLM do.
    """
    room = None if context is None else context - prompt_tokens
    if room is not None and room < 1:
        raise ApiError(
            400,
            f"the prompt is {prompt_tokens} tokens, which fills the model's context of {context} tokens; "
            "shorten the messages",
        )
    if budget.max_new_tokens is not None:
        if room is not None and budget.max_new_tokens > room:
            raise ApiError(
                400,
                f"{budget.field} {budget.max_new_tokens} does not fit: the prompt is {prompt_tokens} tokens and the "
                f"model's context is {context}; ask for at most {room} new tokens",
            )
        return budget.max_new_tokens
    if budget.max_length is not None:
        wanted = budget.max_length - prompt_tokens
        if wanted <= 0:
            raise ApiError(
                400,
                f"max_length {budget.max_length} counts the prompt too (HF meaning) and leaves no room: the prompt "
                f"is {prompt_tokens} tokens; raise max_length above {prompt_tokens} or send max_new_tokens instead",
            )
    else:
        wanted = budget.default
    capped = min(wanted, limit)
    return capped if room is None else min(capped, room)


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
