"""AgentScope 0.x model configs: the entries `up` merges into ``model_config.json``.

One entry per client endpoint, named ``BASE-SUFFIX`` (``demo-post``, ``demo-openai``); the
fields are the ones AgentScope 0.1.6 accepts (shared/reference/agentscope-clients.md §3). An
embedding deployment gets the embedding model types under the same names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from launcher.agents.format_names import ENDPOINTS, SUFFIX
from launcher.core.launch import ClientEndpoint, ClientKind

if TYPE_CHECKING:
    from launcher.core.deployment import AgentScopeSettings

__all__ = ["ENDPOINTS", "KINDS", "SUFFIX", "agentscope_entries", "agentscope_entry", "entry_name"]


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
    return _embedding_entry(name, endpoint, settings)


def _embedding_entry(name: str, endpoint: ClientEndpoint, settings: AgentScopeSettings) -> dict[str, Any]:
    """The embedding model types of AgentScope 0.x. No generate_args: their values reach
    ``embeddings.create``, which refuses the chat template's ``temperature``."""
    if endpoint.kind == "openai_embedding":
        return {
            "config_name": name,
            "model_type": "openai_embedding",
            "model_name": endpoint.model_name,
            "api_key": endpoint.api_key or "EMPTY",
            "client_args": {"base_url": endpoint.url.rstrip("/") + "/", "timeout": settings.request_timeout},
        }
    if endpoint.kind == "post_api_embedding":
        # The body is {messages_key: texts, **json_args}: OpenAI's {"input", "model"}, read back
        # as data[i].embedding. 0.1.x defines the class but does not register it (README).
        entry: dict[str, Any] = {
            "config_name": name,
            "model_type": "post_api_embedding",
            "model_name": endpoint.model_name,
            "api_url": endpoint.url,
            "messages_key": "input",
            "json_args": {"model": endpoint.model_name, "encoding_format": "float"},
            "post_args": {"timeout": settings.request_timeout},
        }
        if endpoint.api_key:
            entry["headers"] = {"Authorization": f"Bearer {endpoint.api_key}"}
        return entry
    if endpoint.kind == "ollama_embedding":
        return {"config_name": name, "model_type": "ollama_embedding", "model_name": endpoint.model_name,
                "keep_alive": "5m", "host": endpoint.url}  # fmt: skip
    raise ValueError(f"no AgentScope entry for {endpoint.kind}")


# The endpoint kinds AgentScope 0.x has a model type for (a reranker it has not).
KINDS: tuple[ClientKind, ...] = ("post_api_chat", "openai_chat", "ollama_chat", "openai_embedding", "post_api_embedding", "ollama_embedding")


def agentscope_entries(
    endpoints: Sequence[ClientEndpoint], settings: AgentScopeSettings, base: str
) -> list[dict[str, Any]]:
    """The entries for the endpoints AgentScope 0.x has a model type for (``KINDS``), in order."""
    return [agentscope_entry(e, settings, base) for e in endpoints if e.kind in KINDS]
