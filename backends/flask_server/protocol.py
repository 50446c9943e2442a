"""From a request body to a :class:`GenerationRequest`: parse, validate (schema.py), apply the rules.

Pure functions: nothing here touches the model, the tokenizer or Flask, so every rule is
unit-testable and the HTTP threads refuse a bad request before it reaches the scheduler queue.
The rules between fields live here, in the order a reader would check them; types and shapes are
the pydantic models' job, and their failures become a 400 in one place (errors.py).

Also the import point for the types a route or a test needs (re-exported below).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from pydantic import ConfigDict, TypeAdapter, ValidationError

from backends.flask_server.body import parse_json_object
from backends.flask_server.errors import ApiError, api_error_from_validation, model_not_found
from backends.flask_server.generation import (
    DEFAULT_CHAT_MAX_NEW_TOKENS,
    DEFAULT_COMPLETION_MAX_NEW_TOKENS,
    GREEDY,
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
from backends.flask_server.schema import (
    CHAT_KEYS,
    CHAT_ROLES,
    COMPLETION_KEYS,
    LLM_GENERATE_KEYS,
    ChatCompletionRequest,
    ChatMessageParam,
    CompletionRequest,
    LlmRequest,
    Messages,
    NamedToolChoice,
    RequestBody,
    ToolCallParam,
)
from backends.flask_server.tools.spec import (
    NO_PARAMETERS,
    Function,
    ResponseFormat,
    ToolCall,
    ToolRequest,
    arguments_text,
)

__all__ = [
    "CHAT_KEYS",
    "CHAT_ROLES",
    "COMPLETION_KEYS",
    "DEFAULT_CHAT_MAX_NEW_TOKENS",
    "DEFAULT_COMPLETION_MAX_NEW_TOKENS",
    "GREEDY",
    "LLM_GENERATE_KEYS",
    "ApiError",
    "ChatMessage",
    "GenerationDefaults",
    "GenerationRequest",
    "Sampling",
    "TokenBudget",
    "chat_generation_request",
    "check_model",
    "completion_generation_request",
    "fallback_prompt",
    "find_stop",
    "held_back",
    "llm_generation_request",
    "model_not_found",
    "normalize_messages",
    "parse_chat_request",
    "parse_completion_request",
    "parse_json_object",
    "parse_llm_request",
    "resolve_max_new_tokens",
    "to_chat_messages",
    "validate",
]

Body = TypeVar("Body", bound=RequestBody)

_MESSAGES: TypeAdapter[list[ChatMessageParam]] = TypeAdapter(Messages, config=ConfigDict(strict=True))


# ----------------------------------------------------------------------------- the body


def validate(model: type[Body], body: Mapping[str, Any]) -> Body:
    """The body as ``model``, or the 400 that names the first wrong field."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise api_error_from_validation(exc, unknown_key=model.unknown_key_message) from None


def check_model(body: Mapping[str, Any], served_name: str) -> None:
    """Before validation, as vLLM does: a client talking to the wrong server learns that first."""
    model = body.get("model")
    if model is None:
        raise ApiError(400, f"model is required; this server serves {served_name!r}")
    if model != served_name:
        raise model_not_found(model)


# ----------------------------------------------------------------------------- messages


def normalize_messages(value: Any, *, field: str = "messages") -> tuple[ChatMessage, ...]:
    """Chat messages in OpenAI or AgentScope shape, validated on their own -> ChatMessage tuple."""
    if value is None:
        return to_chat_messages(None, field=field)
    try:
        params = _MESSAGES.validate_python(value)
    except ValidationError as exc:
        raise api_error_from_validation(exc, prefix=(field,)) from None
    return to_chat_messages(params, field=field)


def to_chat_messages(params: Sequence[ChatMessageParam] | None, *, field: str) -> tuple[ChatMessage, ...]:
    """Validated messages -> what the scheduler renders: text parts joined, developer -> system."""
    if params is None:
        raise ApiError(400, f'{field} is required: a non-empty array of {{"role": ..., "content": ...}} objects')
    out: list[ChatMessage] = []
    for i, msg in enumerate(params):
        if msg.content is None:
            # Only an assistant turn may lack content (it carried tool calls in OpenAI's shape).
            if msg.role != "assistant":
                raise ApiError(400, f"{field}[{i}].content is required: a string or an array of text parts")
            text = ""
        else:
            # vLLM joins text parts with a newline; do the same so prompts match across backends.
            text = "\n".join(part.text for part in msg.content)
        role = "system" if msg.role == "developer" else msg.role
        calls = tuple(_earlier_call(call, f"{field}[{i}].tool_calls[{j}]") for j, call in enumerate(msg.tool_calls or ()))
        out.append(ChatMessage(role=role, content=text, name=msg.name or None, tool_calls=calls,
                               tool_call_id=msg.tool_call_id))  # fmt: skip
    return tuple(out)


def _earlier_call(call: ToolCallParam, where: str) -> ToolCall:
    arguments = arguments_text(call.function.arguments)
    if arguments is None:
        raise ApiError(400, f"{where}.function.arguments must be a JSON object (as text), got {call.function.arguments!r:.80}")
    return ToolCall(call.function.name, arguments, call.id)


# ----------------------------------------------------------------------------- /llm/


def parse_llm_request(body: Mapping[str, Any], *, limit: int, defaults: GenerationDefaults) -> GenerationRequest:
    """AgentScope ``post_api_chat``: ``{"messages" | "inputs": [...], <generate kwargs>}``."""
    return llm_generation_request(validate(LlmRequest, body), limit=limit, defaults=defaults)


def llm_generation_request(req: LlmRequest, *, limit: int, defaults: GenerationDefaults) -> GenerationRequest:
    field = "inputs" if "inputs" in req.model_fields_set else "messages"
    messages = to_chat_messages(req.inputs if field == "inputs" else req.messages, field=field)
    max_new = _within_limit("max_new_tokens", req.max_new_tokens, limit)
    min_new = _within_limit("min_new_tokens", req.min_new_tokens, limit) or 0
    rep = req.repetition_penalty if req.repetition_penalty is not None else defaults.repetition_penalty
    if _llm_samples(req, defaults):
        sampling = Sampling(
            do_sample=True,
            temperature=req.temperature if req.temperature is not None else defaults.temperature,
            top_p=req.top_p if req.top_p is not None else defaults.top_p,
            top_k=req.top_k if req.top_k is not None else defaults.top_k,
            repetition_penalty=rep,
            min_new_tokens=min_new,
        )
    else:
        sampling = Sampling(do_sample=False, repetition_penalty=rep, min_new_tokens=min_new)
    field = "max_new_tokens" if max_new is not None else "max_length"
    budget = TokenBudget(field=field, max_new_tokens=max_new, max_length=None if max_new else req.max_length)
    return GenerationRequest(sampling=sampling, budget=budget, messages=messages)


def _llm_samples(req: LlmRequest, defaults: GenerationDefaults) -> bool:
    """generate()'s meaning of do_sample, minus the two ways HF would surprise the caller."""
    if req.temperature == 0.0:
        return False  # HF rejects temperature 0 when sampling; the caller means greedy
    if req.do_sample is not None:
        return req.do_sample
    if req.temperature is not None:
        return True  # a temperature without do_sample would be ignored by HF; the caller means "sample"
    return defaults.do_sample


def _within_limit(field: str, value: int | None, limit: int) -> int | None:
    if value is not None and value > limit:
        raise ApiError(
            400,
            f"{field} must be <= {limit}, got {value} "
            f"(this server's --max-new-tokens-limit is {limit}; ask for fewer tokens)",
        )
    return value


# ----------------------------------------------------------------------------- OpenAI


def parse_chat_request(body: Mapping[str, Any], *, served_name: str, limit: int) -> GenerationRequest:
    check_model(body, served_name)
    return chat_generation_request(validate(ChatCompletionRequest, body), limit=limit)


def chat_generation_request(req: ChatCompletionRequest, *, limit: int) -> GenerationRequest:
    messages = to_chat_messages(req.messages, field="messages")
    tools = tool_request(req)
    fmt = response_format(req)
    if fmt is not None and tools is not None and not tools.forced:
        raise ApiError(400, "response_format and tools with tool_choice auto cannot both shape one reply; send "
                            "response_format alone, or tools (with tool_choice required for a call)")  # fmt: skip
    # AgentScope 2.x sends max_completion_tokens, older clients max_tokens; the first one given wins.
    tokens = [("max_completion_tokens", req.max_completion_tokens), ("max_tokens", req.max_tokens)]
    budget = _openai_budget(tokens, limit=limit, default=DEFAULT_CHAT_MAX_NEW_TOKENS)
    return GenerationRequest(
        sampling=_openai_sampling(req, limit=limit),
        budget=budget,
        messages=messages,
        stop=tuple(req.stop or ()),
        stream=bool(req.stream),
        include_usage=_include_usage(req),
        tools=tools,
        response_format=fmt,
        n=req.n or 1,
        logprobs=(req.top_logprobs or 0) if req.logprobs else None,
    )


def tool_request(req: ChatCompletionRequest) -> ToolRequest | None:
    """``tools`` / ``tool_choice`` / ``parallel_tool_calls`` (or the older ``functions`` /
    ``function_call``) -> what the model is offered; None when no tool may be called."""
    if req.tools is not None and req.functions is not None:
        raise ApiError(400, "send tools or functions (the older spelling), not both")
    if req.tool_choice is not None and req.function_call is not None:
        raise ApiError(400, "send tool_choice or function_call (the older spelling), not both")
    defs = [t.function for t in req.tools] if req.tools is not None else list(req.functions or [])
    choice_field = "tool_choice" if req.function_call is None else "function_call"
    raw = req.tool_choice if req.tool_choice is not None else req.function_call
    choice = raw if isinstance(raw, str) or raw is None else (raw.function.name if isinstance(raw, NamedToolChoice)
                                                             else raw.name)  # fmt: skip
    if not defs:
        if choice not in (None, "none", "auto"):
            raise ApiError(400, f"{choice_field} asks for a tool call, but the request offers no tools; send tools")
        return None
    if choice == "none":
        return None
    functions = tuple(Function(d.name, d.description, d.parameters if d.parameters is not None else dict(NO_PARAMETERS),
                               bool(d.strict)) for d in defs)  # fmt: skip
    names = [f.name for f in functions]
    if len(set(names)) != len(names):
        raise ApiError(400, f"tools: every function needs its own name, got {names}")
    if choice not in (None, "auto", "required") and choice not in names:
        raise ApiError(400, f"{choice_field} names {choice!r}, which is not among the tools ({', '.join(names)})")
    return ToolRequest(functions, choice or "auto", req.parallel_tool_calls)


def response_format(req: ChatCompletionRequest) -> ResponseFormat | None:
    fmt = req.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return ResponseFormat("json_object")
    spec = fmt.json_schema
    if spec is None or spec.schema_ is None:
        raise ApiError(400, "response_format.json_schema.schema is required for a json_schema response_format")
    return ResponseFormat("json_schema", spec.schema_, bool(spec.strict), spec.name or "")


def parse_completion_request(body: Mapping[str, Any], *, served_name: str, limit: int) -> GenerationRequest:
    check_model(body, served_name)
    return completion_generation_request(validate(CompletionRequest, body), limit=limit)


def completion_generation_request(req: CompletionRequest, *, limit: int) -> GenerationRequest:
    if req.prompt is None:
        raise ApiError(400, "prompt is required: one non-empty string (token arrays and batches are not supported)")
    if req.echo not in (None, False):
        raise ApiError(400, "echo is not supported by this server; leave it out")
    if req.suffix is not None:
        raise ApiError(400, "suffix is not supported by this server; leave it out")
    if req.best_of not in (None, 1):
        raise ApiError(400, f"best_of must be 1 on this server, got {req.best_of}")
    budget = _openai_budget([("max_tokens", req.max_tokens)], limit=limit, default=DEFAULT_COMPLETION_MAX_NEW_TOKENS)
    return GenerationRequest(
        sampling=_openai_sampling(req, limit=limit),
        budget=budget,
        prompt=req.prompt,
        stop=tuple(req.stop or ()),
        stream=bool(req.stream),
        include_usage=_include_usage(req),
        n=req.n or 1,
        logprobs=req.logprobs,
    )


def _openai_budget(tokens: Sequence[tuple[str, int | None]], *, limit: int, default: int) -> TokenBudget:
    for field, value in tokens:
        if value is not None:
            return TokenBudget(field=field, max_new_tokens=_within_limit(field, value, limit), default=default)
    return TokenBudget(field=tokens[0][0], default=default)


def _openai_sampling(req: ChatCompletionRequest | CompletionRequest, *, limit: int) -> Sampling:
    _refuse_unservable(req)
    shared = Sampling(
        do_sample=False,
        repetition_penalty=req.repetition_penalty if req.repetition_penalty is not None else 1.0,
        min_new_tokens=_within_limit("min_tokens", req.min_tokens, limit) or 0,
        presence_penalty=req.presence_penalty or 0.0,
        frequency_penalty=req.frequency_penalty or 0.0,
        logit_bias=_logit_bias(req.logit_bias),
        seed=req.seed,
    )
    # OpenAI's default temperature is 1.0, i.e. sampling; only an explicit 0 means greedy.
    if req.temperature == 0.0:
        return shared
    return replace(
        shared,
        do_sample=True,
        temperature=req.temperature if req.temperature is not None else 1.0,
        top_p=req.top_p if req.top_p is not None else 1.0,
        # vLLM uses -1 for "off"; HF uses 0. Both mean: no top-k filtering (OpenAI has none).
        top_k=max(req.top_k, 0) if req.top_k is not None else 0,
    )


def _logit_bias(value: dict[str, Any] | None) -> tuple[tuple[int, float], ...]:
    """OpenAI's ``{"token id": bias}`` (bias from -100 to 100) as sorted pairs."""
    out = []
    for key, bias in (value or {}).items():
        # ASCII only: "²".isdigit() holds but int("²") fails; past 18 digits no vocabulary reaches
        # and int() of a 5,000-digit key fails too (Python's str-to-int limit).
        if not (key.isascii() and key.isdigit()) or len(key) > 18:
            raise ApiError(400, f"logit_bias keys must be token ids (digits), got {key!r:.40}", param="logit_bias")
        if isinstance(bias, bool) or not isinstance(bias, int | float) or not -100 <= bias <= 100:
            raise ApiError(400, f"logit_bias[{key!r}] must be a number from -100 to 100, got {json.dumps(bias)}")
        out.append((int(key), float(bias)))
    return tuple(sorted(out))


def _refuse_unservable(req: ChatCompletionRequest | CompletionRequest) -> None:
    """Fields OpenAI clients send that this server cannot honour: a 400 that names each, as
    OpenAI answers them for a model without the feature (nothing is silently dropped)."""
    if req.store:
        raise ApiError(400, "store is not supported: this server keeps no completions; leave store out or false")
    if req.service_tier not in (None, "auto", "default"):
        raise ApiError(400, f"service_tier {req.service_tier!r} is not offered; this server has one tier (auto)")
    if isinstance(req, ChatCompletionRequest):
        if req.top_logprobs is not None and not req.logprobs:
            raise ApiError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
        if req.reasoning_effort is not None:
            raise ApiError(400, "reasoning_effort is not supported with this model (it does not reason); leave it out")
        if req.modalities not in (None, ["text"]):
            raise ApiError(400, f'modalities must be ["text"] on this text-only server, got {json.dumps(req.modalities)}')


def _include_usage(req: ChatCompletionRequest | CompletionRequest) -> bool:
    return req.stream_options is not None and bool(req.stream_options.include_usage)
