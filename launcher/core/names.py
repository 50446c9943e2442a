"""Names shared across the launcher that carry no behaviour: the APIs a deployment offers and
the kinds of client endpoint. Only ``typing``: the CLI imports these for its choices."""

from __future__ import annotations

from typing import Literal

# The HTTP APIs a deployment can offer: OpenAI /v1, AgentScope's POST /llm/, Ollama's native /api.
Api = Literal["openai", "post", "ollama"]
# How an agent client reaches a deployment (AgentScope 0.x model types).
ClientKind = Literal["post_api_chat", "openai_chat", "ollama_chat"]
