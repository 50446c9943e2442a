"""Agent clients that speak Anthropic Messages or OpenAI Responses (`config --format ...`), from a
deployment's OpenAI endpoint (the surfaces share its host and port: Messages at its root,
Responses under /v1). Pure renderers, like the others in formats.py.

- ``anthropic-env``: Claude Code and the Anthropic SDKs read ANTHROPIC_BASE_URL and
  ANTHROPIC_AUTH_TOKEN (sent as ``Authorization: Bearer``); Claude Code takes its model from
  ANTHROPIC_MODEL and, for its background and sub-agent calls, ANTHROPIC_DEFAULT_{OPUS,SONNET,
  HAIKU}_MODEL (2.x) and ANTHROPIC_SMALL_FAST_MODEL (1.x); CLAUDE_CODE_MAX_OUTPUT_TOKENS caps its
  replies (its default, 32,000, is more than local servers allow).
- ``codex``: Codex CLI's ``~/.codex/config.toml``: ``model``, ``model_provider`` and a
  ``[model_providers.ID]`` table with ``base_url`` (ending in /v1), ``wire_api = "responses"``
  and ``env_key`` (the variable holding the key: never the key itself). IDs openai, ollama and
  lmstudio are Codex's own.
- ``openai-agents``: the OpenAI Agents SDK with ``OpenAIResponsesModel`` on an ``AsyncOpenAI``
  client (checked with openai-agents 0.24.0).
- ``agentscope-v1-anthropic`` / ``-responses``, ``agentscope-v2-anthropic`` / ``-responses``:
  AgentScope's AnthropicChatModel and OpenAIResponseModel (1.0.21: model_name, api_key, stream,
  max_tokens, client_kwargs, generate_kwargs; the anthropic SDK it installs has no temperature
  parameter, so extra_body carries it. 2.0.11: credential, model, parameters, stream, client_kwargs).
"""

from __future__ import annotations

import json
import re
import shlex
from typing import TYPE_CHECKING

from launcher.agents.rendered_config import RenderedConfig
from launcher.agents.snippets import _call, _caveats, _py, _snippet

if TYPE_CHECKING:
    from launcher.core.deployment import AgentScopeSettings
    from launcher.core.launch import ClientEndpoint

KEY_ENV = "MODELSERVE_API_KEY"  # where Codex reads a deployment's key from (its config holds no key)


def root(e: ClientEndpoint) -> str:
    """The Anthropic base URL: the server's root (the SDKs add /v1/messages themselves)."""
    return e.url.rstrip("/").removesuffix("/v1")


def v1(e: ClientEndpoint) -> str:
    return e.url.rstrip("/")


def anthropic_env(eps: tuple[ClientEndpoint, ...], s: AgentScopeSettings, base: str, dep: str,
                  notes: list[str]) -> RenderedConfig:  # fmt: skip
    e = eps[0]
    model = shlex.quote(e.model_name)
    lines = [f"ANTHROPIC_BASE_URL={shlex.quote(root(e))}", f"ANTHROPIC_AUTH_TOKEN={shlex.quote(e.api_key or 'EMPTY')}",
             f"ANTHROPIC_MODEL={model}", *(f"ANTHROPIC_DEFAULT_{tier}_MODEL={model}" for tier in ("OPUS", "SONNET", "HAIKU")),
             f"ANTHROPIC_SMALL_FAST_MODEL={model}", f"CLAUDE_CODE_MAX_OUTPUT_TOKENS={s.max_tokens}"]  # fmt: skip
    notes.append("Claude Code and the Anthropic SDKs read these (`export $(modelserve config ...)`, or the \"env\" of "
                 "~/.claude/settings.json); every model tier is the served one")  # fmt: skip
    return RenderedConfig("anthropic-env", "\n".join(lines) + "\n", "new-file", eps, tuple(notes))


def codex(eps: tuple[ClientEndpoint, ...], s: AgentScopeSettings, base: str, dep: str,
          notes: list[str]) -> RenderedConfig:  # fmt: skip
    e = eps[0]
    provider = re.sub(r"[^A-Za-z0-9_-]", "-", f"modelserve-{base}")
    table = [f"[model_providers.{provider}]", f"name = {json.dumps(f'modelserve {dep}')}",
             f"base_url = {json.dumps(v1(e))}", 'wire_api = "responses"']  # fmt: skip
    if e.api_key:
        table.append(f'env_key = "{KEY_ENV}"')
        notes.append(f"Codex reads the key from ${KEY_ENV}: export {KEY_ENV}=... before running codex")
    text = "\n".join([f"# Codex CLI: merge into ~/.codex/config.toml (modelserve deployment {dep!r})",
                      f"model = {json.dumps(e.model_name)}", f'model_provider = "{provider}"', "", *table]) + "\n"  # fmt: skip
    notes.append("Codex speaks OpenAI Responses (/v1/responses) with this provider")
    return RenderedConfig("codex", text, "new-file", eps, tuple(notes))


def openai_agents(eps: tuple[ClientEndpoint, ...], s: AgentScopeSettings, base: str, dep: str,
                  notes: list[str]) -> RenderedConfig:  # fmt: skip
    e = eps[0]
    key, imports = _py(e.api_key or "EMPTY"), []
    header = [f"OpenAI Agents SDK (checked with openai-agents 0.24.0) for modelserve deployment {dep!r}:",
              f"OpenAI Responses at {v1(e)}",
              "Run it: from agents import Runner; print(Runner.run_sync(agent, \"Hello\").final_output)",
              *_caveats(notes)]  # fmt: skip
    imports += ["from agents import Agent, ModelSettings, OpenAIResponsesModel, set_tracing_disabled",
                "from openai import AsyncOpenAI"]  # fmt: skip
    body = ["# Traces would go to OpenAI's servers (and need an OpenAI key): off.", "set_tracing_disabled(True)",
            *_call("client", "AsyncOpenAI", [("base_url", _py(v1(e)), ""), ("api_key", key, ""),
                                             ("timeout", _py(s.request_timeout), "")]),
            *_call("agent", "Agent", [
                ("name", _py("assistant"), ""), ("instructions", _py("You are a helpful assistant."), ""),
                ("model", f"OpenAIResponsesModel(model={_py(e.model_name)}, openai_client=client)",
                 "sent as \"model\": the served name"),
                ("model_settings", f"ModelSettings(temperature={s.temperature!r}, max_tokens={s.max_tokens!r})", ""),
            ])]  # fmt: skip
    return RenderedConfig("openai-agents", _snippet(header, imports, body), "new-file", eps, tuple(notes))


def _agentscope(version: int, surface: str, eps: tuple[ClientEndpoint, ...], s: AgentScopeSettings, dep: str,
                notes: list[str]) -> RenderedConfig:  # fmt: skip
    e = eps[0]
    key, imports = _py(e.api_key or "EMPTY"), []
    anthropic = surface == "anthropic"
    where = f"Anthropic Messages at {root(e)}" if anthropic else f"OpenAI Responses at {v1(e)}"
    checked = "1.0.21" if version == 1 else "2.0.11"
    header = [f"AgentScope {version}.x (checked with {checked}) for modelserve deployment {dep!r}:", where,
              "Hand it to an agent: ReActAgent(name=..., sys_prompt=..., model=model, formatter=formatter)"
              if version == 1 else "Hand it to an agent: agentscope.agent.Agent(name=..., system_prompt=..., model=model)",
              *_caveats(notes)]  # fmt: skip
    cls = "AnthropicChatModel" if anthropic else "OpenAIResponseModel"
    url = root(e) if anthropic else v1(e)
    if version == 1:
        fmt = "AnthropicChatFormatter" if anthropic else "OpenAIResponseChatFormatter"
        imports += [f"from agentscope.formatter import {fmt}", f"from agentscope.model import {cls}"]
        generate = ({"extra_body": {"temperature": s.temperature}} if anthropic else
                    {"temperature": s.temperature, "max_output_tokens": s.max_tokens})  # fmt: skip
        args = [("model_name", _py(e.model_name), "sent as \"model\": the served name"), ("api_key", key, ""),
                ("stream", "False", ""), *([("max_tokens", repr(s.max_tokens), "")] if anthropic else []),
                ("client_kwargs", _py({"base_url": url, "timeout": s.request_timeout}), ""),
                ("generate_kwargs", _py(generate), "the anthropic SDK 2.17 has no temperature parameter: extra_body "
                 "carries it" if anthropic else "")]  # fmt: skip
        body = [*_call("model", cls, args), f"formatter = {fmt}()"]
    else:
        credential = "AnthropicCredential" if anthropic else "OpenAICredential"
        imports += [f"from agentscope.credential import {credential}", f"from agentscope.model import {cls}"]
        params = f"max_tokens={s.max_tokens!r}" + ("" if anthropic else f", temperature={s.temperature!r}")
        args = [("credential", f"{credential}(api_key={key}, base_url={_py(url)})", ""),
                ("model", _py(e.model_name), "sent as \"model\": the served name"),
                ("parameters", f"{cls}.Parameters({params})", ""), ("stream", "False", ""),
                ("client_kwargs", _py({"timeout": s.request_timeout}), "")]  # fmt: skip
        body = _call("model", cls, args)
    name = f"agentscope-v{version}-{surface}"
    return RenderedConfig(name, _snippet(header, imports, body), "new-file", eps, tuple(notes))  # type: ignore[arg-type]


def agentscope_v1_anthropic(eps: tuple[ClientEndpoint, ...], s: AgentScopeSettings, base: str, dep: str,
                            notes: list[str]) -> RenderedConfig:  # fmt: skip
    return _agentscope(1, "anthropic", eps, s, dep, notes)


def agentscope_v1_responses(eps: tuple[ClientEndpoint, ...], s: AgentScopeSettings, base: str, dep: str,
                            notes: list[str]) -> RenderedConfig:  # fmt: skip
    return _agentscope(1, "responses", eps, s, dep, notes)


def agentscope_v2_anthropic(eps: tuple[ClientEndpoint, ...], s: AgentScopeSettings, base: str, dep: str,
                            notes: list[str]) -> RenderedConfig:  # fmt: skip
    return _agentscope(2, "anthropic", eps, s, dep, notes)


def agentscope_v2_responses(eps: tuple[ClientEndpoint, ...], s: AgentScopeSettings, base: str, dep: str,
                            notes: list[str]) -> RenderedConfig:  # fmt: skip
    return _agentscope(2, "responses", eps, s, dep, notes)
