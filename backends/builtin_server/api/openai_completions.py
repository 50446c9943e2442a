"""``POST /v1/completions`` (the legacy text API): one prompt string in, text choices out."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from backends.builtin_server.api.common import check_model, openai_usage
from backends.builtin_server.api.logprobs import completion_logprobs
from backends.builtin_server.api.openai_chat import finish_reason
from backends.builtin_server.api.openai_params import include_usage, openai_budget, openai_sampling
from backends.builtin_server.api.protocol import CompletionRequest
from backends.builtin_server.api.validation import validate
from backends.builtin_server.engine.jobs import Completion
from backends.builtin_server.engine.request import DEFAULT_COMPLETION_MAX_NEW_TOKENS, GenerationRequest
from backends.builtin_server.errors import ApiError


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
    budget = openai_budget([("max_tokens", req.max_tokens)], limit=limit, default=DEFAULT_COMPLETION_MAX_NEW_TOKENS)
    return GenerationRequest(
        sampling=openai_sampling(req, limit=limit),
        budget=budget,
        prompt=req.prompt,
        stop=tuple(req.stop or ()),
        stream=bool(req.stream),
        include_usage=include_usage(req),
        n=req.n or 1,
        logprobs=req.logprobs,
    )


def completion_body(result: Completion, *, rid: str, served_name: str) -> dict[str, Any]:
    choices = [{"index": i, "text": c.text or "", "finish_reason": finish_reason(c.finish_reason),
                "logprobs": completion_logprobs(c.logprobs) if c.logprobs is not None else None}
               for i, c in enumerate(result.choices)]  # fmt: skip
    return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": served_name,
            "choices": choices,
            "usage": openai_usage(result.prompt_tokens, result.completion_tokens, result.cached_tokens)}  # fmt: skip
