"""Agent client configs for a deployment, one renderer per client format (`modelserve config`).

Pure: (client endpoints, AgentScope settings, names) -> :class:`RenderedConfig`, the text to
print plus the entries ``--write`` merges. Only ``cli_config`` reads state or writes files.
Every key below is a verified fact from shared/reference/agentscope-clients.md (§ numbers):

- ``agentscope``: AgentScope 0.x model configs, exactly what ``up`` writes (``clients``).
- ``modelscope-agent``: ModelScope-Agent's ``llm_config`` dict (§5.1).
- ``agentfabric``: named entries for AgentFabric's ``config/model_config.json`` (§5.2).
- ``agentscope-v1`` / ``agentscope-v2``: Python snippets for AgentScope 1.x / 2.x (§6).
- ``openai-env``: ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` lines for any OpenAI SDK client.

A format that cannot express an endpoint leaves it out with a note; a request that leaves
nothing is an error that names the formats that would work.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from launcher.errors import ClientConfigError

if TYPE_CHECKING:
    from backends.base import ClientEndpoint
    from launcher.spec import AgentScopeSettings

    # (endpoints to render, settings, entry-name prefix, deployment name, notes so far)
    Renderer = Callable[[tuple[ClientEndpoint, ...], AgentScopeSettings, str, str, list[str]], "RenderedConfig"]

# launcher.clients (and through it pydantic) is imported where used: the CLI imports this
# module for its option choices, and `modelserve --help` stays fast.

Format = Literal["agentscope", "modelscope-agent", "agentfabric", "agentscope-v1", "agentscope-v2", "openai-env"]
FORMATS: tuple[Format, ...] = get_args(Format)
EndpointKind = Literal["post_api_chat", "openai_chat", "ollama_chat"]
# How --write combines the text with an existing file.
WriteMode = Literal["merge-list", "merge-object", "new-file"]
# --endpoint spells the kinds the way `up` suffixes its entry names.
ENDPOINTS: dict[str, EndpointKind] = {"post": "post_api_chat", "openai": "openai_chat", "ollama": "ollama_chat"}
SUFFIX: dict[str, str] = {kind: name for name, kind in ENDPOINTS.items()}  # = clients.SUFFIX
DESCRIBE: dict[str, str] = {
    "post_api_chat": "POST /llm/",
    "openai_chat": "OpenAI-compatible",
    "ollama_chat": "native Ollama",
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


@dataclass(frozen=True)
class _Spec:
    # Endpoint kinds the format can express, preferred first.
    kinds: tuple[EndpointKind, ...]
    # One endpoint per output (a dict, a snippet, env lines) or all of them (named entries).
    single: bool
    write_mode: WriteMode
    # Why each other kind is left out.
    cannot: dict[EndpointKind, str]


_NO_POST = "it has no client for the AgentScope POST /llm/ envelope"
SPECS: dict[Format, _Spec] = {
    "agentscope": _Spec(("post_api_chat", "openai_chat", "ollama_chat"), False, "merge-list", {}),
    "modelscope-agent": _Spec(("openai_chat",), True, "new-file", {
        "post_api_chat": f"ModelScope-Agent: {_NO_POST}",
        # Its `ollama` client (llm/ollama.py) drops every generation option and needs is_chat
        # true or it calls ollama.Client.chat(prompt=...), which does not exist.
        "ollama_chat": "ModelScope-Agent's `ollama` client ignores max_tokens/temperature; "
                       "use the deployment's OpenAI-compatible endpoint (--endpoint openai)",
    }),  # fmt: skip
    "agentfabric": _Spec(("openai_chat",), False, "merge-object", {
        "post_api_chat": f"AgentFabric: {_NO_POST}",
        "ollama_chat": "AgentFabric's `ollama` type ignores max_tokens/temperature; "
                       "use the deployment's OpenAI-compatible endpoint (--endpoint openai)",
    }),  # fmt: skip
    "agentscope-v1": _Spec(("ollama_chat", "openai_chat"), True, "new-file", {
        "post_api_chat": f"AgentScope 1.x: {_NO_POST} (config files and post_api_chat are gone since 1.0)",
    }),  # fmt: skip
    "agentscope-v2": _Spec(("ollama_chat", "openai_chat"), True, "new-file", {
        "post_api_chat": f"AgentScope 2.x: {_NO_POST}",
    }),  # fmt: skip
    "openai-env": _Spec(("openai_chat",), True, "new-file", {
        "post_api_chat": "OPENAI_BASE_URL cannot point at a POST /llm/ server",
        "ollama_chat": "the native Ollama API is not the OpenAI API (use --endpoint openai: Ollama serves /v1 too)",
    }),  # fmt: skip
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
) -> RenderedConfig:
    """Render ``fmt`` for the deployment's endpoints (``only``: one of ENDPOINTS' keys).

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
    picked = [e for e in endpoints if e.kind == ENDPOINTS[only]]
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
    from launcher import clients

    entries = clients.agentscope_entries(eps, s, base)
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
    from launcher import clients

    named: dict[str, dict[str, Any]] = {}
    for e in eps:
        # AgentFabric renames "type" to "model_server" and passes the rest to the client (§5.2).
        entry = {"type": "openai", **{k: v for k, v in llm_config(e).items() if k != "model_server"}}
        named[clients.entry_name(base, e)] = {**entry, "support_stream": False}
    notes.append("merge it into AgentFabric's config/model_config.json and select it with "
                 + " or ".join(f'"model": "{n}"' for n in named) + " in config/builder_config.json")  # fmt: skip
    notes.extend(_logs_key(eps))
    return RenderedConfig("agentfabric", _dump(named), "merge-object", eps, tuple(notes), named=named)


def _logs_key(eps: tuple[ClientEndpoint, ...]) -> list[str]:
    # Seen with 0.7.2: its OpenAI client logs "client url ..., client key: KEY" at INFO.
    if any(e.api_key for e in eps):
        return ["ModelScope-Agent 0.7.2 writes the API key into logs/info.log under the working folder"]
    return []


# ---- Python snippets --------------------------------------------------------------------------


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


def _agentscope_v1(eps: tuple[ClientEndpoint, ...], s: AgentScopeSettings, base: str, dep: str,
                   notes: list[str]) -> RenderedConfig:  # fmt: skip
    e = eps[0]
    header = [*f"AgentScope 1.x (checked with 1.0.21) {_where(dep, e)}".splitlines(),
              "Models are async: `await model(await formatter.format(msgs))`, or hand both to an agent:",
              '  ReActAgent(name="assistant", sys_prompt="...", model=model, formatter=formatter)']  # fmt: skip
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


def _agentscope_v2(eps: tuple[ClientEndpoint, ...], s: AgentScopeSettings, base: str, dep: str,
                   notes: list[str]) -> RenderedConfig:  # fmt: skip
    e = eps[0]
    header = [*f"AgentScope 2.x (checked with 2.0.11) {_where(dep, e)}".splitlines(),
              "Models are async: `await model([Msg(name=\"user\", role=\"user\", content=[TextBlock(text=...)])])`,",
              "or hand it to an agent: agentscope.agent.Agent(name=..., system_prompt=..., model=model)"]  # fmt: skip
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
    "agentscope-v1": _agentscope_v1,
    "agentscope-v2": _agentscope_v2,
    "openai-env": _openai_env,
}
