"""The result of rendering a client config, shared by the format renderers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from launcher.agents.format_names import Format

if TYPE_CHECKING:
    from launcher.core.launch import ClientEndpoint

# Notes about what a deployment cannot do start so: the snippets repeat them as comments.
CAVEAT_PREFIX = "this deployment "
# How --write combines the text with an existing file.
WriteMode = Literal["merge-list", "merge-object", "new-file"]
DESCRIBE: dict[str, str] = {
    "post_api_chat": "POST /llm/",
    "openai_chat": "OpenAI-compatible",
    "ollama_chat": "native Ollama",
    "openai_embedding": "OpenAI-compatible embeddings",
    "post_api_embedding": "POST /v1/embeddings",
    "ollama_embedding": "native Ollama embeddings",
    "rerank": "rerank",
}


@dataclass(frozen=True)
class RenderedConfig:
    format: Format
    text: str  # printed as is, or written by --write
    write_mode: WriteMode
    endpoints: tuple[ClientEndpoint, ...]  # the ones rendered
    notes: tuple[str, ...] = ()  # what was left out and why; how to use the result
    entries: tuple[dict[str, Any], ...] = ()  # merge-list: AgentScope 0.x configs
    named: dict[str, dict[str, Any]] = field(default_factory=dict)  # merge-object: AgentFabric entries

    @property
    def holds_secret(self) -> bool:
        """An API key is in the text (a new file gets mode 0600)."""
        return any(e.api_key and e.api_key in self.text for e in self.endpoints)
