"""Rules every API surface shares: which model a request names, the new-token limit, usage counts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backends.builtin_server.engine.jobs import Completion
from backends.builtin_server.errors import ApiError, model_not_found


def check_model(body: Mapping[str, Any], served_name: str) -> None:
    """Before validation, as vLLM does: a client talking to the wrong server learns that first."""
    model = body.get("model")
    if model is None:
        raise ApiError(400, f"model is required; this server serves {served_name!r}")
    if model != served_name:
        raise model_not_found(model)


def within_limit(field: str, value: int | None, limit: int) -> int | None:
    if value is not None and value > limit:
        raise ApiError(
            400,
            f"{field} must be <= {limit}, got {value} "
            f"(this server's --max-new-tokens-limit is {limit}; ask for fewer tokens)",
        )
    return value


def usage(result: Completion) -> dict[str, int]:
    """The token counts of AgentScope's /llm/ envelope."""
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


def openai_usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int) -> dict[str, Any]:
    """OpenAI's usage object; ``prompt_tokens_details.cached_tokens``: prompt tokens served from the
    prefix cache (OpenAI's and vLLM's field for prompt caching)."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    }
