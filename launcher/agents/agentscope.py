"""AgentScope 0.x model configs: the entries `up` merges into ``model_config.json``.

One entry per client endpoint, named ``BASE-SUFFIX`` (``demo-post``, ``demo-openai``); the
fields are the ones AgentScope 0.1.6 accepts (shared/reference/agentscope-clients.md §3).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from launcher.agents.format_names import ENDPOINTS, SUFFIX
from launcher.core.launch import ClientEndpoint

if TYPE_CHECKING:
    from launcher.core.deployment import AgentScopeSettings

__all__ = ["ENDPOINTS", "SUFFIX", "agentscope_entries", "agentscope_entry", "entry_name"]


def entry_name(base: str, endpoint: ClientEndpoint) -> str:
    return f"{base}-{SUFFIX[endpoint.kind]}"


def agentscope_entry(endpoint: ClientEndpoint, settings: AgentScopeSettings, base: str) -> dict[str, Any]:
    """One AgentScope 0.x model config (the fields 0.1.6 accepts; see the reference for traps)."""
    name = entry_name(base, endpoint)
    if endpoint.kind == "post_api_chat":
        # model_name is required since 0.1.2 (the upstream Flask configs fail without it); it is
        # not sent in the body. json_args must hold only generate() kwargs: the server passes
        # them to generate().
        json_args: dict[str, Any] = {"max_new_tokens": settings.max_tokens}
        if settings.temperature > 0:
            json_args.update({"temperature": settings.temperature, "do_sample": True})
        else:
            json_args["do_sample"] = False
        entry: dict[str, Any] = {
            "config_name": name,
            "model_type": "post_api_chat",
            "model_name": endpoint.model_name,
            "api_url": endpoint.url,
            "json_args": json_args,
            # `timeout` at the top level is accepted but never used by 0.1.6; post_args is.
            "post_args": {"timeout": settings.request_timeout},
        }
        if endpoint.api_key:
            entry["headers"] = {"Authorization": f"Bearer {endpoint.api_key}"}
        return entry
    if endpoint.kind == "openai_chat":
        return {
            "config_name": name,
            "model_type": "openai_chat",
            "model_name": endpoint.model_name,  # sent as "model": must be the served name
            "api_key": endpoint.api_key or "EMPTY",  # the OpenAI SDK refuses to start without one
            "client_args": {"base_url": endpoint.url.rstrip("/") + "/", "timeout": settings.request_timeout},
            "generate_args": {"max_tokens": settings.max_tokens, "temperature": settings.temperature},
        }
    if endpoint.kind == "ollama_chat":
        # Any key beyond these reaches ollama.Client(**kwargs) and crashes it.
        return {
            "config_name": name,
            "model_type": "ollama_chat",
            "model_name": endpoint.model_name,
            "options": {"temperature": settings.temperature, "num_predict": settings.max_tokens},
            "keep_alive": "5m",
            "host": endpoint.url,
        }
    raise ValueError(f"no AgentScope entry for {endpoint.kind}")


def agentscope_entries(
    endpoints: Sequence[ClientEndpoint], settings: AgentScopeSettings, base: str
) -> list[dict[str, Any]]:
    return [agentscope_entry(e, settings, base) for e in endpoints]
