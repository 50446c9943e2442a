"""What Chat Completions and Completions share: the token budget, the sampling fields, and the
fields this server refuses by name."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from backends.builtin_server.api.common import within_limit
from backends.builtin_server.api.protocol import ChatCompletionRequest, CompletionRequest
from backends.builtin_server.engine.request import Sampling, TokenBudget
from backends.builtin_server.errors import ApiError

OpenAIRequest = ChatCompletionRequest | CompletionRequest


def openai_budget(tokens: Sequence[tuple[str, int | None]], *, limit: int, default: int) -> TokenBudget:
    for field, value in tokens:
        if value is not None:
            return TokenBudget(field=field, max_new_tokens=within_limit(field, value, limit), default=default)
    return TokenBudget(field=tokens[0][0], default=default)


def openai_sampling(req: OpenAIRequest, *, limit: int) -> Sampling:
    refuse_unservable(req)
    shared = Sampling(
        do_sample=False,
        repetition_penalty=req.repetition_penalty if req.repetition_penalty is not None else 1.0,
        min_new_tokens=within_limit("min_tokens", req.min_tokens, limit) or 0,
        presence_penalty=req.presence_penalty or 0.0,
        frequency_penalty=req.frequency_penalty or 0.0,
        logit_bias=logit_bias(req.logit_bias),
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


def logit_bias(value: dict[str, Any] | None) -> tuple[tuple[int, float], ...]:
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


def refuse_unservable(req: OpenAIRequest) -> None:
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


def include_usage(req: OpenAIRequest) -> bool:
    return req.stream_options is not None and bool(req.stream_options.include_usage)
