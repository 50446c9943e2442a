"""``POST /v1/chat/completions``: the wire request -> a GenerationRequest, the engine's result -> the
wire response (streams: api/openai_stream.py). The lingua franca other surfaces translate to."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from backends.builtin_server.api.common import check_model, openai_usage
from backends.builtin_server.api.logprobs import chat_logprobs
from backends.builtin_server.api.messages import to_chat_messages
from backends.builtin_server.api.openai_params import include_usage, openai_budget, openai_sampling
from backends.builtin_server.api.protocol import ChatCompletionRequest, NamedToolChoice
from backends.builtin_server.api.validation import validate
from backends.builtin_server.engine.jobs import Choice, Completion
from backends.builtin_server.engine.request import DEFAULT_CHAT_MAX_NEW_TOKENS, GenerationRequest
from backends.builtin_server.errors import ApiError
from backends.builtin_server.tools.spec import NO_PARAMETERS, Function, ResponseFormat, ToolRequest


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
    budget = openai_budget(tokens, limit=limit, default=DEFAULT_CHAT_MAX_NEW_TOKENS)
    return GenerationRequest(
        sampling=openai_sampling(req, limit=limit),
        budget=budget,
        messages=messages,
        stop=tuple(req.stop or ()),
        stream=bool(req.stream),
        include_usage=include_usage(req),
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


def chat_completion_body(result: Completion, *, rid: str, served_name: str) -> dict[str, Any]:
    choices = [_chat_choice(i, c) for i, c in enumerate(result.choices)]
    return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": served_name,
            "choices": choices,
            "usage": openai_usage(result.prompt_tokens, result.completion_tokens, result.cached_tokens)}  # fmt: skip


def _chat_choice(index: int, choice: Choice) -> dict[str, object]:
    # OpenAI's schema requires `refusal` (a model here never refuses by itself: null).
    message: dict[str, object] = {"role": "assistant", "content": choice.text, "refusal": None}
    if choice.tool_calls:
        message["tool_calls"] = [call.as_openai() for call in choice.tool_calls]
    logprobs = {"content": chat_logprobs(choice.logprobs), "refusal": None} if choice.logprobs is not None else None
    out = {"index": index, "message": message, "logprobs": logprobs, "finish_reason": finish_reason(choice.finish_reason)}
    if choice.stop is not None:  # which stop string ended it, as vLLM reports (the Anthropic surface's stop_sequence)
        out["stop_reason"] = choice.stop
    return out


def finish_reason(reason: str) -> str:
    # A reply cut short because its client went away never reaches that client; say "stop".
    return "stop" if reason == "cancelled" else reason
