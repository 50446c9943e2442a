"""Agent client configs for a deployment, one renderer per client format (`modelserve config`).

Pure: (client endpoints, AgentScope settings, names) -> :class:`RenderedConfig`, the text to
print plus the entries ``--write`` merges. Only the CLI reads state and ``agents.config_files`` writes.
Every key below is a verified fact from shared/reference/agentscope-clients.md (§ numbers):

- ``agentscope``: AgentScope 0.x model configs, exactly what ``up`` writes (``agentscope``).
- ``modelscope-agent``: ModelScope-Agent's ``llm_config`` dict (§5.1).
- ``agentfabric``: named entries for AgentFabric's ``config/model_config.json`` (§5.2).
- ``agentscope-v1`` / ``agentscope-v2``: Python snippets for AgentScope 1.x / 2.x (§6).
- ``openai-env``: ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` lines for any OpenAI SDK client.
- ``anthropic-env``, ``codex``, ``openai-agents``, ``agentscope-v{1,2}-{anthropic,responses}``:
  clients of Anthropic Messages and OpenAI Responses (surface_clients.py).

A format that cannot express an endpoint leaves it out with a note; a request that leaves
nothing is an error that names the formats that would work.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from launcher.agents import surface_clients
from launcher.agents.agentscope import ENDPOINTS, KINDS, SUFFIX, agentscope_entries, entry_name
from launcher.agents.format_names import FORMATS, Format
from launcher.agents.rendered_config import DESCRIBE, RenderedConfig, WriteMode
from launcher.agents.snippets import agentscope_v1, agentscope_v2
from launcher.core.errors import ClientConfigError
from launcher.core.launch import ClientKind

if TYPE_CHECKING:
    from launcher.core.deployment import AgentScopeSettings
    from launcher.core.launch import ClientEndpoint

    # (endpoints to render, settings, entry-name prefix, deployment name, notes so far)
    Renderer = Callable[[tuple[ClientEndpoint, ...], AgentScopeSettings, str, str, list[str]], RenderedConfig]

__all__ = ["ENDPOINTS", "FORMATS", "Format", "RenderedConfig", "entry_base", "render"]


@dataclass(frozen=True)
class _Spec:
    # Endpoint kinds the format can express, preferred first.
    kinds: tuple[ClientKind, ...]
    # One endpoint per output (a dict, a snippet, env lines) or all of them (named entries).
    single: bool
    write_mode: WriteMode
    # Why each other kind is left out.
    cannot: dict[ClientKind, str]


_NO_POST = "it has no client for the AgentScope POST /llm/ envelope"
_NO_RERANK = ("it has no reranker client; send POST {\"model\", \"query\", \"documents\"} to this URL yourself "
              "(README: Embeddings and rerank)")
# ModelScope-Agent's llm_config and AgentFabric's model_config.json entries each configure a chat model.
_NO_EMBEDDING_SLOT = "its config configures a chat model and has no slot for an embedding endpoint"
_MODELSCOPE_NO: dict[ClientKind, str] = {
    "openai_embedding": _NO_EMBEDDING_SLOT, "post_api_embedding": _NO_EMBEDDING_SLOT,
    "ollama_embedding": _NO_EMBEDDING_SLOT, "rerank": _NO_RERANK,
}  # fmt: skip
_V1_NO: dict[ClientKind, str] = {
    "post_api_embedding": "it has no POST-API embedding class; the OpenAI-compatible one reaches the same route "
                          "(--endpoint openai)",
    "rerank": _NO_RERANK,
}  # fmt: skip
SPECS: dict[Format, _Spec] = {
    "agentscope": _Spec(KINDS, False, "merge-list", {"rerank": f"AgentScope 0.x: {_NO_RERANK}"}),
    "modelscope-agent": _Spec(("openai_chat",), True, "new-file", {
        "post_api_chat": f"ModelScope-Agent: {_NO_POST}",
        # Its `ollama` client (llm/ollama.py) drops every generation option and needs is_chat
        # true or it calls ollama.Client.chat(prompt=...), which does not exist.
        "ollama_chat": "ModelScope-Agent's `ollama` client ignores max_tokens/temperature; "
                       "use the deployment's OpenAI-compatible endpoint (--endpoint openai)",
        **{k: f"ModelScope-Agent: {v}" for k, v in _MODELSCOPE_NO.items()},
    }),  # fmt: skip
    "agentfabric": _Spec(("openai_chat",), False, "merge-object", {
        "post_api_chat": f"AgentFabric: {_NO_POST}",
        "ollama_chat": "AgentFabric's `ollama` type ignores max_tokens/temperature; "
                       "use the deployment's OpenAI-compatible endpoint (--endpoint openai)",
        **{k: f"AgentFabric: {v}" for k, v in _MODELSCOPE_NO.items()},
    }),  # fmt: skip
    "agentscope-v1": _Spec(("ollama_chat", "openai_chat", "ollama_embedding", "openai_embedding"), True, "new-file", {
        "post_api_chat": f"AgentScope 1.x: {_NO_POST} (config files and post_api_chat are gone since 1.0)",
        **{k: f"AgentScope 1.x: {v}" for k, v in _V1_NO.items()},
    }),  # fmt: skip
    "agentscope-v2": _Spec(("ollama_chat", "openai_chat", "ollama_embedding", "openai_embedding"), True, "new-file", {
        "post_api_chat": f"AgentScope 2.x: {_NO_POST}",
        **{k: f"AgentScope 2.x: {v}" for k, v in _V1_NO.items()},
    }),  # fmt: skip
    "openai-env": _Spec(("openai_chat", "openai_embedding"), True, "new-file", {
        "post_api_chat": "OPENAI_BASE_URL cannot point at a POST /llm/ server",
        "ollama_chat": "the native Ollama API is not the OpenAI API (use --endpoint openai: Ollama serves /v1 too)",
        "post_api_embedding": "it is the same route as the OpenAI-compatible endpoint (--endpoint openai)",
        "ollama_embedding": "the native Ollama API is not the OpenAI API (use --endpoint openai: Ollama serves /v1 too)",
        "rerank": "the OpenAI SDK has no rerank call",
    }),  # fmt: skip
    # Anthropic Messages and OpenAI Responses share the host and port of the OpenAI endpoint.
    **{name: _Spec(("openai_chat",), True, "new-file", {
        "post_api_chat": "it speaks Anthropic Messages or OpenAI Responses, not the POST /llm/ envelope",
        "ollama_chat": "it speaks Anthropic Messages or OpenAI Responses (use --endpoint openai: the same server)",
        **dict.fromkeys(("openai_embedding", "post_api_embedding", "ollama_embedding", "rerank"),
                        "it speaks Anthropic Messages or OpenAI Responses: a chat model's, not this one's"),
    }) for name in ("anthropic-env", "codex", "openai-agents", "agentscope-v1-anthropic", "agentscope-v1-responses",
                    "agentscope-v2-anthropic", "agentscope-v2-responses")},  # fmt: skip
}


def entry_base(deployment: str, written_names: Sequence[str]) -> str:
    """The entry-name prefix ``up`` used: recovered from the names it wrote (``BASE-openai``),
    else the deployment name (``up``'s default when agentscope.config_name is unset)."""
    bases = set()
    for name in written_names:
        base, _, suffix = name.rpartition("-")
        if not base or suffix not in ENDPOINTS:
            return deployment
        bases.add(base)
    return bases.pop() if len(bases) == 1 else deployment


def render(
    fmt: Format,
    endpoints: Sequence[ClientEndpoint],
    settings: AgentScopeSettings,
    *,
    deployment: str,
    base: str,
    only: str | None = None,
    caveat: str | None = None,
) -> RenderedConfig:
    """Render ``fmt`` for the deployment's endpoints (``only``: one of ENDPOINTS' keys).
    ``caveat``: what a client must know about the deployment (it cannot call tools); a note, and
    a comment in the Python snippets.

    Raises ClientConfigError when nothing can be rendered, naming the formats that would work.
    """
    spec = SPECS[fmt]
    chosen = _select(endpoints, deployment=deployment, only=only)
    usable = [e for e in chosen if e.kind in spec.kinds]  # in the deployment's order, as `up` writes them
    notes = [f"left out the {DESCRIBE[e.kind]} endpoint {e.url}: {spec.cannot[e.kind]}"
             for e in chosen if e.kind not in spec.kinds]  # fmt: skip
    if not usable:
        would = [f for f in FORMATS if any(e.kind in SPECS[f].kinds for e in chosen)]
        hint = f"use --format {' or '.join(would)}" if would else "start the model with a backend that serves /v1"
        if not would and all(e.kind == "rerank" for e in chosen):
            hint = "a reranker needs no agent config: clients POST to its /v1/rerank (README: Embeddings and rerank)"
        excluded = [e for e in endpoints if e.kind in spec.kinds]
        if excluded:  # --endpoint left out the one that works
            hint = f"pass --endpoint {SUFFIX[excluded[0].kind]} or leave --endpoint out, or {hint}"
        raise ClientConfigError(f"--format {fmt} cannot express any endpoint of {deployment!r}: " + "; ".join(notes),
                                hint)  # fmt: skip
    if spec.single and len(usable) > 1:
        usable.sort(key=lambda e: spec.kinds.index(e.kind))
        for other in usable[1:]:
            suffix = SUFFIX[other.kind]
            notes.append(f"rendered the {DESCRIBE[usable[0].kind]} endpoint; for the {DESCRIBE[other.kind]} "
                         f"one ({other.url}) pass --endpoint {suffix}")  # fmt: skip
        usable = usable[:1]
    if caveat:
        notes.insert(0, caveat)
    return _RENDERERS[fmt](tuple(usable), settings, base, deployment, notes)


def _select(endpoints: Sequence[ClientEndpoint], *, deployment: str, only: str | None) -> list[ClientEndpoint]:
    if not endpoints:
        raise ClientConfigError(
            f"deployment {deployment!r} has no client endpoints in its record (started by an older modelserve?)",
            f"restart it: `modelserve down {deployment}`, then `modelserve up` again",
        )
    if only is None:
        return list(endpoints)
    if only not in ENDPOINTS:
        raise ClientConfigError(f"unknown endpoint {only!r}", f"use one of {', '.join(ENDPOINTS)}")
    picked = [e for e in endpoints if e.kind in ENDPOINTS[only]]
    if not picked:
        have = ", ".join(SUFFIX[e.kind] for e in endpoints)
        raise ClientConfigError(f"deployment {deployment!r} has no {only} endpoint (it has: {have})",
                                f"pass --endpoint {SUFFIX[endpoints[0].kind]}, or leave --endpoint out")  # fmt: skip
    return picked


# ---- JSON formats -----------------------------------------------------------------------------


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def _agentscope(eps: tuple[ClientEndpoint, ...], s: AgentScopeSettings, base: str, dep: str,
                notes: list[str]) -> RenderedConfig:  # fmt: skip
    entries = agentscope_entries(eps, s, base)
    return RenderedConfig("agentscope", _dump(entries), "merge-list", eps, tuple(notes), entries=tuple(entries))


def llm_config(endpoint: ClientEndpoint) -> dict[str, Any]:
    """ModelScope-Agent's ``llm_config`` for an OpenAI-compatible server (§5.1)."""
    return {
        "model_server": "openai",
        "model": endpoint.model_name,  # sent as "model": the served name
        "api_base": endpoint.url.rstrip("/"),
        # Explicit, so a user's OPENAI_API_KEY is never sent to a local server.
        "api_key": endpoint.api_key or "EMPTY",
        "is_chat": True,
        # None would send a get_current_weather tool-calling probe on first use.
        "is_function_call": False,
    }


def _modelscope_agent(eps: tuple[ClientEndpoint, ...], s: AgentScopeSettings, base: str, dep: str,
                      notes: list[str]) -> RenderedConfig:  # fmt: skip
    notes.append("use it as Agent/RolePlay(llm=<this dict>, ...) or get_chat_model(**<this dict>)")
    notes.extend(_logs_key(eps))
    return RenderedConfig("modelscope-agent", _dump(llm_config(eps[0])), "new-file", eps, tuple(notes))


def _agentfabric(eps: tuple[ClientEndpoint, ...], s: AgentScopeSettings, base: str, dep: str,
                 notes: list[str]) -> RenderedConfig:  # fmt: skip
    named: dict[str, dict[str, Any]] = {}
    for e in eps:
        # AgentFabric renames "type" to "model_server" and passes the rest to the client (§5.2).
        entry = {"type": "openai", **{k: v for k, v in llm_config(e).items() if k != "model_server"}}
        named[entry_name(base, e)] = {**entry, "support_stream": False}
    notes.append("merge it into AgentFabric's config/model_config.json and select it with "
                 + " or ".join(f'"model": "{n}"' for n in named) + " in config/builder_config.json")  # fmt: skip
    notes.extend(_logs_key(eps))
    return RenderedConfig("agentfabric", _dump(named), "merge-object", eps, tuple(notes), named=named)


def _logs_key(eps: tuple[ClientEndpoint, ...]) -> list[str]:
    # Seen with 0.7.2: its OpenAI client logs "client url ..., client key: KEY" at INFO.
    if any(e.api_key for e in eps):
        return ["ModelScope-Agent 0.7.2 writes the API key into logs/info.log under the working folder"]
    return []


# ---- environment lines ------------------------------------------------------------------------


def _openai_env(eps: tuple[ClientEndpoint, ...], s: AgentScopeSettings, base: str, dep: str,
                notes: list[str]) -> RenderedConfig:  # fmt: skip
    e = eps[0]
    # No comment lines: `export $(modelserve config ...)` and `env $(...) cmd` must work too.
    text = f"OPENAI_BASE_URL={shlex.quote(e.url.rstrip('/'))}\nOPENAI_API_KEY={shlex.quote(e.api_key or 'EMPTY')}\n"
    notes.append(f'clients must send "model": {json.dumps(e.model_name)} (the served name)')
    return RenderedConfig("openai-env", text, "new-file", eps, tuple(notes))


_RENDERERS: dict[Format, Renderer] = {
    "agentscope": _agentscope,
    "modelscope-agent": _modelscope_agent,
    "agentfabric": _agentfabric,
    "agentscope-v1": agentscope_v1,
    "agentscope-v2": agentscope_v2,
    "openai-env": _openai_env,
    "anthropic-env": surface_clients.anthropic_env,
    "codex": surface_clients.codex,
    "openai-agents": surface_clients.openai_agents,
    "agentscope-v1-anthropic": surface_clients.agentscope_v1_anthropic,
    "agentscope-v1-responses": surface_clients.agentscope_v1_responses,
    "agentscope-v2-anthropic": surface_clients.agentscope_v2_anthropic,
    "agentscope-v2-responses": surface_clients.agentscope_v2_responses,
}
