"""Python snippets that build an AgentScope 1.x or 2.x model for a deployment (`config
--format agentscope-v1|agentscope-v2`); every keyword is from shared/reference/agentscope-clients.md §6."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from launcher.agents.rendered_config import CAVEAT_PREFIX, DESCRIBE, RenderedConfig

if TYPE_CHECKING:
    from launcher.core.deployment import AgentScopeSettings
    from launcher.core.launch import ClientEndpoint


def _caveats(notes: list[str]) -> list[str]:
    """What the deployment cannot do, as header comments (a snippet outlives the terminal's notes)."""
    return [f"Note: {n}" for n in notes if n.startswith(CAVEAT_PREFIX)]


def _py(value: Any) -> str:
    """A Python literal (json.dumps spells a str as a valid double-quoted Python literal)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_py(k)}: {_py(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bool | int | float) or value is None:
        return repr(value)
    raise TypeError(f"no Python literal for {type(value).__name__}")


def _call(target: str, callee: str, args: Sequence[tuple[str, str, str]]) -> list[str]:
    """``target = callee(\\n    key=value,  # comment\\n)``; args are (key, literal, comment)."""
    lines = [f"{target} = {callee}("]
    for key, literal, comment in args:
        if comment:
            lines.append(f"    # {comment}")
        lines.append(f"    {key}={literal},")
    return [*lines, ")"]


def _snippet(header: list[str], imports: list[str], body: list[str]) -> str:
    return "\n".join([*(f"# {h}" if h else "#" for h in header), *sorted(imports), "", *body]) + "\n"


def _where(dep: str, e: ClientEndpoint) -> str:
    return f"for modelserve deployment {dep!r}:\n{DESCRIBE[e.kind]} API at {e.url}"


def agentscope_v1(eps: tuple[ClientEndpoint, ...], s: AgentScopeSettings, base: str, dep: str,
                   notes: list[str]) -> RenderedConfig:  # fmt: skip
    e = eps[0]
    if e.kind.endswith("_embedding"):
        return _embedding_v1(eps, s, dep, notes)
    header = [*f"AgentScope 1.x (checked with 1.0.21) {_where(dep, e)}".splitlines(),
              "Models are async: `await model(await formatter.format(msgs))`, or hand both to an agent:",
              '  ReActAgent(name="assistant", sys_prompt="...", model=model, formatter=formatter)',
              *_caveats(notes)]  # fmt: skip
    if e.kind == "ollama_chat":
        header.append("Needs the ollama package: pip install ollama")
        imports = ["from agentscope.formatter import OllamaChatFormatter", "from agentscope.model import OllamaChatModel"]
        args = [
            ("model_name", _py(e.model_name), ""),
            ("stream", "False", ""),
            ("options", _py({"temperature": s.temperature, "num_predict": s.max_tokens}), ""),
            ("keep_alive", _py("5m"), ""),
            ("host", _py(e.url), ""),
            ("client_kwargs", _py({"timeout": s.request_timeout}), ""),
        ]
        body = [*_call("model", "OllamaChatModel", args), "formatter = OllamaChatFormatter()"]
    else:
        imports = ["from agentscope.formatter import OpenAIChatFormatter", "from agentscope.model import OpenAIChatModel"]
        args = [
            ("model_name", _py(e.model_name), "sent as \"model\": the served name"),
            ("api_key", _py(e.api_key or "EMPTY"), ""),
            ("stream", "False", ""),
            ("client_kwargs", _py({"base_url": e.url.rstrip("/"), "timeout": s.request_timeout}),
             "AgentScope 1.0.0 spells it client_args"),
            ("generate_kwargs", _py({"max_tokens": s.max_tokens, "temperature": s.temperature}), ""),
        ]
        body = [*_call("model", "OpenAIChatModel", args), "formatter = OpenAIChatFormatter()"]
    return RenderedConfig("agentscope-v1", _snippet(header, imports, body), "new-file", eps,
                          tuple(notes))  # fmt: skip


def agentscope_v2(eps: tuple[ClientEndpoint, ...], s: AgentScopeSettings, base: str, dep: str,
                   notes: list[str]) -> RenderedConfig:  # fmt: skip
    e = eps[0]
    if e.kind.endswith("_embedding"):
        return _embedding_v2(eps, s, dep, notes)
    header = [*f"AgentScope 2.x (checked with 2.0.11) {_where(dep, e)}".splitlines(),
              "Models are async: `await model([Msg(name=\"user\", role=\"user\", content=[TextBlock(text=...)])])`,",
              "or hand it to an agent: agentscope.agent.Agent(name=..., system_prompt=..., model=model)",
              *_caveats(notes)]  # fmt: skip
    params = f"max_tokens={s.max_tokens!r}, temperature={s.temperature!r}"
    timeout = _py({"timeout": s.request_timeout})
    if e.kind == "ollama_chat":
        header.append("Needs the ollama package: pip install 'agentscope[ollama]'")
        imports = ["from agentscope.credential import OllamaCredential", "from agentscope.model import OllamaChatModel"]
        args = [
            ("credential", f"OllamaCredential(host={_py(e.url)})", ""),
            ("model", _py(e.model_name), ""),
            ("parameters", f"OllamaChatModel.Parameters({params})", ""),
            ("stream", "False", ""),
            ("client_kwargs", timeout, ""),
        ]
        body = _call("model", "OllamaChatModel", args)
    else:
        imports = ["from agentscope.credential import OpenAICredential", "from agentscope.model import OpenAIChatModel"]
        credential = f"OpenAICredential(api_key={_py(e.api_key or 'EMPTY')}, base_url={_py(e.url.rstrip('/'))})"
        args = [
            ("credential", credential, ""),
            ("model", _py(e.model_name), "sent as \"model\": the served name"),
            ("parameters", f"OpenAIChatModel.Parameters({params})",
             "2.x sends max_tokens as max_completion_tokens"),
            ("stream", "False", ""),
            ("client_kwargs", timeout, ""),
        ]
        body = _call("model", "OpenAIChatModel", args)
    return RenderedConfig("agentscope-v2", _snippet(header, imports, body), "new-file", eps,
                          tuple(notes))  # fmt: skip


def _dimensions(e: ClientEndpoint) -> tuple[str, str]:
    """(literal, comment) for ``dimensions``: the model's real size, which the clients send."""
    if e.dimensions is not None:
        return str(e.dimensions), "the model's own size: AgentScope sends it with every request"
    return "None", "the model's size: `ollama show MODEL` (its embedding_length); None sends none"


_KNOWLEDGE = ["For a knowledge base: agentscope.rag.SimpleKnowledge(embedding_model=embedding,",
              "  embedding_store=QdrantStore(location=\":memory:\", collection_name=..., dimensions=<the same>))"]


def _embedding_v1(eps: tuple[ClientEndpoint, ...], s: AgentScopeSettings, dep: str, notes: list[str]) -> RenderedConfig:
    e = eps[0]
    header = [*f"AgentScope 1.x (checked with 1.0.21) {_where(dep, e)}".splitlines(),
              "Embedding models are async: `await embedding([\"text\", ...])` -> .embeddings", *_KNOWLEDGE,
              *_caveats(notes)]  # fmt: skip
    size, why = _dimensions(e)
    if e.kind == "ollama_embedding":
        header.append("Needs the ollama package: pip install ollama")
        imports = ["from agentscope.embedding import OllamaTextEmbedding"]
        args = [("model_name", _py(e.model_name), ""), ("dimensions", size, why), ("host", _py(e.url), ""),
                ("timeout", repr(s.request_timeout), "")]  # fmt: skip
        body = _call("embedding", "OllamaTextEmbedding", args)
    else:
        imports = ["from agentscope.embedding import OpenAITextEmbedding"]
        args = [("model_name", _py(e.model_name), "sent as \"model\": the served name"),
                ("api_key", _py(e.api_key or "EMPTY"), ""), ("dimensions", size, why),
                ("base_url", _py(e.url.rstrip("/")), "the rest is passed to openai.AsyncClient"),
                ("timeout", repr(s.request_timeout), "")]  # fmt: skip
        body = _call("embedding", "OpenAITextEmbedding", args)
    return RenderedConfig("agentscope-v1", _snippet(header, imports, body), "new-file", eps, tuple(notes))


def _embedding_v2(eps: tuple[ClientEndpoint, ...], s: AgentScopeSettings, dep: str, notes: list[str]) -> RenderedConfig:
    e = eps[0]
    header = [*f"AgentScope 2.x (checked with 2.0.11's source) {_where(dep, e)}".splitlines(),
              "Embedding models are async: `await embedding([\"text\", ...])` -> .embeddings", *_caveats(notes)]  # fmt: skip
    size, why = _dimensions(e)
    if e.kind == "ollama_embedding":
        header.append("Needs the ollama package: pip install 'agentscope[ollama]'")
        imports = ["from agentscope.credential import OllamaCredential",
                   "from agentscope.embedding import OllamaEmbeddingModel"]  # fmt: skip
        args = [("credential", f"OllamaCredential(host={_py(e.url)})", ""), ("model", _py(e.model_name), ""),
                ("dimensions", size, why)]  # fmt: skip
        body = _call("embedding", "OllamaEmbeddingModel", args)
    else:
        imports = ["from agentscope.credential import OpenAICredential",
                   "from agentscope.embedding import OpenAIEmbeddingModel"]  # fmt: skip
        credential = f"OpenAICredential(api_key={_py(e.api_key or 'EMPTY')}, base_url={_py(e.url.rstrip('/'))})"
        args = [("credential", credential, ""), ("model", _py(e.model_name), "sent as \"model\": the served name"),
                ("dimensions", size, why)]  # fmt: skip
        body = _call("embedding", "OpenAIEmbeddingModel", args)
    return RenderedConfig("agentscope-v2", _snippet(header, imports, body), "new-file", eps, tuple(notes))
