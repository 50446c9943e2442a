"""Request validation and message normalisation for the built-in server: pure functions only.

Nothing here touches the model, the tokenizer or Flask, so every rule is unit-testable and the HTTP
threads can reject a bad request before it ever reaches the scheduler queue. The checks that need
the prompt's token count (context window, ``max_length``) live in :func:`resolve_max_new_tokens`,
which the scheduler thread calls once it has tokenised the prompt.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# /llm/ passes these straight to generate() in AgentScope's original script. Anything else
# (notably "model", which AgentScope users tend to put in json_args) would make generate() raise
# there; we answer 400 instead so the caller learns which key to drop.
LLM_GENERATE_KEYS: tuple[str, ...] = (
    "max_new_tokens",
    "max_length",
    "min_new_tokens",
    "do_sample",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
)
# num_beams is deliberately absent: beam search cannot share a batched sampling generate() call.

# OpenAI fields we accept. Those we cannot honour but that are harmless to ignore (seed, penalties,
# user, tools, ...) are listed so that real clients (AgentScope 1.x/2.x, ModelScope-Agent) work;
# anything not listed is a 400 that names the key, since silently dropping a typo hides bugs.
_OPENAI_COMMON_KEYS: frozenset[str] = frozenset(
    {
        "model",
        "max_tokens",
        "temperature",
        "top_p",
        "n",
        "stream",
        "stream_options",
        "stop",
        "seed",
        "user",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "metadata",
        "store",
        "service_tier",
        # vLLM's extra sampling parameters, which we can honour.
        "top_k",
        "repetition_penalty",
        "min_tokens",
    }
)
CHAT_KEYS: frozenset[str] = _OPENAI_COMMON_KEYS | {
    "messages",
    "max_completion_tokens",
    "top_logprobs",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "functions",
    "function_call",
    "reasoning_effort",
    "modalities",
}
COMPLETION_KEYS: frozenset[str] = _OPENAI_COMMON_KEYS | {"prompt", "echo", "suffix", "best_of"}

# Chat templates know system/user/assistant (some also tool); "developer" is OpenAI's newer name
# for "system" and is mapped to it so templates that raise on unknown roles keep working.
CHAT_ROLES: frozenset[str] = frozenset({"system", "user", "assistant", "tool", "function", "developer"})

DEFAULT_CHAT_MAX_NEW_TOKENS = 512
# OpenAI's documented default for /v1/completions.
DEFAULT_COMPLETION_MAX_NEW_TOKENS = 16


class ApiError(Exception):
    """A request the server refuses, with the HTTP status and an OpenAI-shaped error body."""

    def __init__(self, status: int, message: str, *, error_type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.error_type, "code": self.status}}


def model_not_found(name: object) -> ApiError:
    # vLLM's exact wording and type, so clients that special-case it keep working.
    return ApiError(404, f"The model `{name}` does not exist.", error_type="NotFoundError")


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str
    # Only the no-template fallback uses it ("{name}: {content}"), as AgentScope's script did.
    name: str | None = None

    def for_template(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


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
    include_usage: bool = False


# ----------------------------------------------------------------------------- JSON body


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, whatever the Content-Type says (curl often sends none)."""
    if not raw.strip():
        raise ApiError(400, "the request body is empty; send a JSON object")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"the request body is not valid JSON ({exc}); send a JSON object") from exc
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, not {_json_type(body)}")
    return body


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


# ----------------------------------------------------------------------------- field checks


def get_int(
    body: Mapping[str, Any], key: str, *, minimum: int, maximum: int | None = None, hint: str = ""
) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    # bool is an int subclass in Python; `true` is never a token count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"{key} must be an integer, got {_json_type(value)} {json.dumps(value)}")
    if value < minimum:
        raise ApiError(400, f"{key} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ApiError(400, f"{key} must be <= {maximum}, got {value}{hint}")
    return value


def get_number(
    body: Mapping[str, Any], key: str, *, minimum: float, maximum: float | None = None, exclusive_minimum: bool = False
) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ApiError(400, f"{key} must be a number, got {_json_type(value)} {json.dumps(value)}")
    if value < minimum or (exclusive_minimum and value == minimum):
        relation = ">" if exclusive_minimum else ">="
        raise ApiError(400, f"{key} must be {relation} {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ApiError(400, f"{key} must be <= {maximum}, got {value}")
    return float(value)


def get_bool(body: Mapping[str, Any], key: str) -> bool | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise ApiError(400, f"{key} must be true or false, got {_json_type(value)} {json.dumps(value)}")
    return value


def _limit_hint(limit: int) -> str:
    return f" (this server's --max-new-tokens-limit is {limit}; ask for fewer tokens)"


# ----------------------------------------------------------------------------- messages


def normalize_messages(value: Any, *, field: str = "messages") -> tuple[ChatMessage, ...]:
    """Chat messages in OpenAI or AgentScope shape -> ChatMessage tuple; 400 on any wrong shape.

    Content may be a string or a list of ``{"type": "text", "text": ...}`` parts (AgentScope 1.x and
    2.x send parts); unknown per-message keys (tool_call_id, ...) are ignored.
    """
    if value is None:
        raise ApiError(400, f'{field} is required: a non-empty array of {{"role": ..., "content": ...}} objects')
    if not isinstance(value, list) or not value:
        what = "an empty array" if isinstance(value, list) else _json_type(value)
        raise ApiError(400, f'{field} must be a non-empty array of {{"role", "content"}} objects, got {what}')
    out: list[ChatMessage] = []
    for i, msg in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(msg, dict):
            raise ApiError(400, f"{where} must be an object with role and content, got {_json_type(msg)}")
        role = msg.get("role")
        if not isinstance(role, str) or role not in CHAT_ROLES:
            raise ApiError(400, f"{where}.role must be one of {', '.join(sorted(CHAT_ROLES))}, got {json.dumps(role)}")
        name = msg.get("name")
        if name is not None and not isinstance(name, str):
            raise ApiError(400, f"{where}.name must be a string, got {_json_type(name)}")
        content = _message_content(msg.get("content"), role=role, where=f"{where}.content")
        out.append(ChatMessage(role="system" if role == "developer" else role, content=content, name=name or None))
    return tuple(out)


def _message_content(content: Any, *, role: str, where: str) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        # An assistant turn that only carried tool calls has null content in OpenAI's shape.
        if role == "assistant":
            return ""
        raise ApiError(400, f"{where} is required: a string or an array of text parts")
    if isinstance(content, list):
        texts: list[str] = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else _json_type(part)
                raise ApiError(
                    400,
                    f'{where}[{j}] must be {{"type": "text", "text": "..."}} (this server is text-only), '
                    f"got type {json.dumps(kind)}",
                )
            texts.append(part["text"])
        # vLLM joins text parts with a newline; do the same so prompts match across backends.
        return "\n".join(texts)
    raise ApiError(400, f"{where} must be a string or an array of text parts, got {_json_type(content)}")


def fallback_prompt(messages: Sequence[ChatMessage]) -> str:
    """The prompt for a tokenizer without a chat template, as AgentScope's original script built it."""
    lines = "".join(f"{m.name or m.role}: {m.content}\n" for m in messages)
    return lines + "assistant: "


# ----------------------------------------------------------------------------- /llm/


def parse_llm_request(body: Mapping[str, Any], *, limit: int, defaults: GenerationDefaults) -> GenerationRequest:
    """AgentScope ``post_api_chat``: ``{"messages" | "inputs": [...], <generate kwargs>}``."""
    if "messages" in body and "inputs" in body:
        raise ApiError(400, "send the chat as either messages or inputs, not both")
    key = "inputs" if "inputs" in body else "messages"
    unknown = sorted(k for k in body if k not in (key, *LLM_GENERATE_KEYS))
    if unknown:
        raise ApiError(
            400,
            f"unsupported key {unknown[0]!r} in the /llm/ body: every key besides messages (or inputs) goes to "
            f"generate(); allowed: {', '.join(LLM_GENERATE_KEYS)}. Drop it from json_args "
            "(the model name belongs in the AgentScope config's model_name, not json_args)",
        )
    messages = normalize_messages(body.get(key), field=key)
    hint = _limit_hint(limit)
    max_new = get_int(body, "max_new_tokens", minimum=1, maximum=limit, hint=hint)
    max_length = get_int(body, "max_length", minimum=1)
    min_new = get_int(body, "min_new_tokens", minimum=0, maximum=limit, hint=hint) or 0
    do_sample = get_bool(body, "do_sample")
    temperature = get_number(body, "temperature", minimum=0.0)
    top_p = get_number(body, "top_p", minimum=0.0, maximum=1.0, exclusive_minimum=True)
    top_k = get_int(body, "top_k", minimum=0)
    repetition_penalty = get_number(body, "repetition_penalty", minimum=0.0, exclusive_minimum=True)

    if temperature == 0.0:
        sample = False  # HF rejects temperature 0 when sampling; the caller means greedy
    elif do_sample is not None:
        sample = do_sample
    elif temperature is not None:
        sample = True  # a temperature without do_sample would be ignored by HF; the caller means "sample"
    else:
        sample = defaults.do_sample
    rep = repetition_penalty if repetition_penalty is not None else defaults.repetition_penalty
    if sample:
        sampling = Sampling(
            do_sample=True,
            temperature=temperature if temperature is not None else defaults.temperature,
            top_p=top_p if top_p is not None else defaults.top_p,
            top_k=top_k if top_k is not None else defaults.top_k,
            repetition_penalty=rep,
            min_new_tokens=min_new,
        )
    else:
        sampling = Sampling(do_sample=False, repetition_penalty=rep, min_new_tokens=min_new)
    field = "max_new_tokens" if max_new is not None else "max_length"
    budget = TokenBudget(field=field, max_new_tokens=max_new, max_length=None if max_new else max_length)
    return GenerationRequest(sampling=sampling, budget=budget, messages=messages)


# ----------------------------------------------------------------------------- OpenAI


def check_model(body: Mapping[str, Any], served_name: str) -> None:
    model = body.get("model")
    if model is None:
        raise ApiError(400, f"model is required; this server serves {served_name!r}")
    if model != served_name:
        raise model_not_found(model)


def _check_known_keys(body: Mapping[str, Any], allowed: frozenset[str], route: str) -> None:
    unknown = sorted(k for k in body if k not in allowed)
    if unknown:
        raise ApiError(400, f"unsupported field {unknown[0]!r} for {route}; known fields: {', '.join(sorted(allowed))}")


def _openai_common(
    body: Mapping[str, Any], *, limit: int, token_keys: Sequence[str], default_max: int
) -> tuple[Sampling, TokenBudget, tuple[str, ...], bool, bool]:
    hint = _limit_hint(limit)
    # AgentScope 2.x sends max_completion_tokens, older clients max_tokens; the first one given wins.
    field, max_new = token_keys[0], None
    for key in token_keys:
        value = get_int(body, key, minimum=1, maximum=limit, hint=hint)
        if value is not None:
            field, max_new = key, value
            break
    n = get_int(body, "n", minimum=1)
    if n is not None and n != 1:
        raise ApiError(400, f"n must be 1 on this server, got {n}; send {n} separate requests instead")
    for key in ("seed",):
        if body.get(key) is not None and (isinstance(body[key], bool) or not isinstance(body[key], int)):
            raise ApiError(400, f"{key} must be an integer, got {_json_type(body[key])}")
    for key in ("presence_penalty", "frequency_penalty"):
        get_number(body, key, minimum=-2.0, maximum=2.0)
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise ApiError(400, f"user must be a string, got {_json_type(body['user'])}")
    if body.get("logit_bias") is not None and not isinstance(body["logit_bias"], dict):
        raise ApiError(400, f"logit_bias must be an object, got {_json_type(body['logit_bias'])}")
    if body.get("logprobs") not in (None, False):
        raise ApiError(400, "logprobs are not supported by this server; leave logprobs out")
    temperature = get_number(body, "temperature", minimum=0.0, maximum=2.0)
    top_p = get_number(body, "top_p", minimum=0.0, maximum=1.0, exclusive_minimum=True)
    top_k = get_int(body, "top_k", minimum=-1)
    repetition_penalty = get_number(body, "repetition_penalty", minimum=0.0, exclusive_minimum=True)
    min_tokens = get_int(body, "min_tokens", minimum=0, maximum=limit, hint=hint) or 0
    stream = bool(get_bool(body, "stream"))
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise ApiError(400, f"stream_options must be an object, got {_json_type(options)}")
        include_usage = bool(get_bool(options, "include_usage"))
    stop = parse_stop(body.get("stop"))

    rep = repetition_penalty if repetition_penalty is not None else 1.0
    # OpenAI's default temperature is 1.0, i.e. sampling; only an explicit 0 means greedy.
    if temperature == 0.0:
        sampling = Sampling(do_sample=False, repetition_penalty=rep, min_new_tokens=min_tokens)
    else:
        sampling = Sampling(
            do_sample=True,
            temperature=temperature if temperature is not None else 1.0,
            top_p=top_p if top_p is not None else 1.0,
            # vLLM uses -1 for "off"; HF uses 0. Both mean: no top-k filtering (OpenAI has none).
            top_k=max(top_k, 0) if top_k is not None else 0,
            repetition_penalty=rep,
            min_new_tokens=min_tokens,
        )
    budget = TokenBudget(field=field, max_new_tokens=max_new, default=default_max)
    return sampling, budget, stop, stream, include_usage


def parse_stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        values: list[Any] = [value]
    elif isinstance(value, list):
        values = value
    else:
        raise ApiError(400, f"stop must be a string or an array of strings, got {_json_type(value)}")
    for item in values:
        if not isinstance(item, str) or not item:
            raise ApiError(400, f"stop must contain only non-empty strings, got {json.dumps(item)}")
    return tuple(values)


def parse_chat_request(body: Mapping[str, Any], *, served_name: str, limit: int) -> GenerationRequest:
    check_model(body, served_name)
    _check_known_keys(body, CHAT_KEYS, "/v1/chat/completions")
    messages = normalize_messages(body.get("messages"))
    fmt = body.get("response_format")
    if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") != "text"):
        raise ApiError(400, 'response_format other than {"type": "text"} is not supported; leave it out')
    for key in ("tools", "functions"):
        if body.get(key) is not None and not isinstance(body[key], list):
            raise ApiError(400, f"{key} must be an array, got {_json_type(body[key])}")
    sampling, budget, stop, stream, include_usage = _openai_common(
        body,
        limit=limit,
        token_keys=("max_completion_tokens", "max_tokens"),
        default_max=DEFAULT_CHAT_MAX_NEW_TOKENS,
    )
    return GenerationRequest(
        sampling=sampling,
        budget=budget,
        messages=messages,
        stop=stop,
        stream=stream,
        include_usage=include_usage,
    )


def parse_completion_request(body: Mapping[str, Any], *, served_name: str, limit: int) -> GenerationRequest:
    check_model(body, served_name)
    _check_known_keys(body, COMPLETION_KEYS, "/v1/completions")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise ApiError(400, "prompt is required: one non-empty string (token arrays and batches are not supported)")
    if body.get("echo") not in (None, False):
        raise ApiError(400, "echo is not supported by this server; leave it out")
    if body.get("suffix") is not None:
        raise ApiError(400, "suffix is not supported by this server; leave it out")
    best_of = get_int(body, "best_of", minimum=1)
    if best_of not in (None, 1):
        raise ApiError(400, f"best_of must be 1 on this server, got {best_of}")
    sampling, budget, stop, stream, include_usage = _openai_common(
        body, limit=limit, token_keys=("max_tokens",), default_max=DEFAULT_COMPLETION_MAX_NEW_TOKENS
    )
    return GenerationRequest(
        sampling=sampling, budget=budget, prompt=prompt, stop=stop, stream=stream, include_usage=include_usage
    )


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


# ----------------------------------------------------------------------------- stop strings


def find_stop(text: str, stops: Sequence[str]) -> int | None:
    """Index where the earliest stop string starts in ``text``, or None."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters of ``text`` could still become a stop string (a stream keeps them back)."""
    keep = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), keep, -1):
            if text.endswith(stop[:k]):
                keep = k
                break
    return keep
