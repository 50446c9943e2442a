"""AgentScope's ``POST /llm/`` (``post_api_chat``): the chat plus generate() kwargs in, its envelope out."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from backends.builtin_server.api.common import usage, within_limit
from backends.builtin_server.api.messages import to_chat_messages
from backends.builtin_server.api.protocol import LlmRequest
from backends.builtin_server.api.validation import validate
from backends.builtin_server.engine.jobs import Completion
from backends.builtin_server.engine.request import GenerationDefaults, GenerationRequest, Sampling, TokenBudget


def parse_llm_request(body: Mapping[str, Any], *, limit: int, defaults: GenerationDefaults) -> GenerationRequest:
    """AgentScope ``post_api_chat``: ``{"messages" | "inputs": [...], <generate kwargs>}``."""
    return llm_generation_request(validate(LlmRequest, body), limit=limit, defaults=defaults)


def llm_generation_request(req: LlmRequest, *, limit: int, defaults: GenerationDefaults) -> GenerationRequest:
    field = "inputs" if "inputs" in req.model_fields_set else "messages"
    messages = to_chat_messages(req.inputs if field == "inputs" else req.messages, field=field)
    max_new = within_limit("max_new_tokens", req.max_new_tokens, limit)
    min_new = within_limit("min_new_tokens", req.min_new_tokens, limit) or 0
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


def llm_envelope(result: Completion, *, served_name: str) -> dict[str, Any]:
    """AgentScope's post_api_chat envelope (reference §1.2), with honest token counts."""
    counts = usage(result)
    response = {
        "choices": [{"message": {"role": "assistant", "content": result.text}}],
        "created": int(time.time()),
        "id": f"llm-{uuid.uuid4().hex}",
        "model": served_name,
        "object": "text_completion",
        "usage": counts,
    }
    data = {
        "completion_tokens": result.completion_tokens,
        "messages": {},
        "prompt_tokens": result.prompt_tokens,
        "response": response,
        "total_tokens": counts["total_tokens"],
        "username": "",
    }
    return {"data": data}
