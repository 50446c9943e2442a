"""Names shared across the launcher that carry no behaviour: the APIs a deployment offers and
the kinds of client endpoint. Only ``typing``: the CLI imports these for its choices."""

from __future__ import annotations

from typing import Literal, get_args

# The HTTP APIs a deployment can offer: OpenAI /v1, AgentScope's POST /llm/, Ollama's native /api.
Api = Literal["openai", "post", "ollama"]
# How an agent client reaches a deployment: AgentScope 0.x model types, and "rerank" (POST
# /v1/rerank, which no agent config format has a slot for; listed so `config` can say so).
ClientKind = Literal["post_api_chat", "openai_chat", "ollama_chat", "openai_embedding", "post_api_embedding",
                     "ollama_embedding", "rerank"]  # fmt: skip
# What a deployment's model does: generate text, embed it (vectors), or rerank documents for a query.
Task = Literal["generate", "embed", "rerank"]
TASKS: tuple[Task, ...] = get_args(Task)
