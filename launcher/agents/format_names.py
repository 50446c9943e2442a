"""The names of client formats and endpoint kinds: what the CLI offers as choices. Kept apart
from the renderers so that `modelserve --help` loads nothing but these tuples."""

from __future__ import annotations

from typing import Literal, get_args

from launcher.core.names import ClientKind

Format = Literal["agentscope", "modelscope-agent", "agentfabric", "agentscope-v1", "agentscope-v2", "openai-env",
                 "anthropic-env", "codex", "openai-agents", "agentscope-v1-anthropic", "agentscope-v1-responses",
                 "agentscope-v2-anthropic", "agentscope-v2-responses"]  # fmt: skip
FORMATS: tuple[Format, ...] = get_args(Format)
# Formats whose clients speak an agent API surface other than Chat Completions, and which one.
SURFACE_OF: dict[str, str] = {"anthropic-env": "messages", "codex": "responses", "openai-agents": "responses",
                              "agentscope-v1-anthropic": "messages", "agentscope-v1-responses": "responses",
                              "agentscope-v2-anthropic": "messages", "agentscope-v2-responses": "responses"}  # fmt: skip
# How entry names and `config --endpoint` spell each kind of endpoint. A deployment has chat or
# embedding endpoints, never both, so the two kinds of one API share a name (`demo-openai`).
ENDPOINTS: dict[str, tuple[ClientKind, ...]] = {
    "post": ("post_api_chat", "post_api_embedding"),
    "openai": ("openai_chat", "openai_embedding"),
    "ollama": ("ollama_chat", "ollama_embedding"),
    "rerank": ("rerank",),
}
SUFFIX: dict[str, str] = {kind: name for name, kinds in ENDPOINTS.items() for kind in kinds}
