"""Ollama: ``ollama serve`` bound with ``OLLAMA_HOST``, or an Ollama that already answers there.

After the server answers, ``after_start`` makes the model present: a tag missing from /api/tags is
pulled, a local GGUF file is uploaded and created. Clients get Ollama's native API (AgentScope's
``ollama_chat``) and its OpenAI-compatible ``/v1``.

Facts this module relies on, from Ollama's own docs (docs/api.md, docs/api/errors.mdx,
docs/api/openai-compatibility.mdx, docs/gpu.mdx) and envconfig's Host():
- ``OLLAMA_HOST`` is ``[scheme://]host[:port]``; `ollama serve` binds there (default 127.0.0.1:11434).
- GET /api/version -> {"version"}; GET /api/tags -> {"models": [{"name": "llama3.2:latest", ...}]}.
  Names are ``[namespace/]model[:tag]``; a missing tag means ``latest``.
- POST /api/pull {"model", "stream"} streams NDJSON: {"status": "pulling manifest"}, then per layer
  {"status": "pulling <short digest>", "digest", "total", "completed"} ("completed" is absent until
  bytes arrive), then "verifying sha256 digest", "writing manifest", "success".
- Errors are {"error": "..."}: as the body of an HTTP error, or as a line of a stream that already
  started (the status code is then 200). An unknown tag: "pull model manifest: file does not exist".
- A model from a GGUF file (the create API since early 2025): HEAD /api/blobs/sha256:<hex> (200 or
  404), POST /api/blobs/sha256:<hex> with the file (201; 400 when the digest does not match), then
  POST /api/create {"model", "files": {"<file name>": "sha256:<hex>"}}, which streams statuses
  ending in "success". The older {"name", "modelfile"} request is refused by current servers
  ("neither 'from' or 'files' was specified"), so it is not used.
- POST /api/copy {"source", "destination"} gives a model a second name.
- /v1/chat/completions and /v1/models are OpenAI-shaped; the API key clients send is ignored.
- CUDA_VISIBLE_DEVICES selects GPUs; an invalid id ("-1") makes Ollama use the CPU only.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import Field

from backends.base import Availability, Backend, BackendOptions, EngineInfo, NoContainer, PlanContext
from backends.ollama.binary import DEFAULT_BINARY, binary_version, find_binary, host_port, server_env
from backends.ollama.client import OllamaAPI, create_from_gguf, pull
from backends.ollama.probes import OllamaModelListed, OllamaVersion
from backends.ollama.progress import PullProgress, human_bytes, progress_lines
from backends.ollama.source import (
    HF_ID_RE,
    TAG_RE,
    TagTable,
    canonical,
    gguf_tag,
    has_model,
    load_tag_table,
    model_source,
)
from backends.probes import EmbeddingAnswers, OpenAIChatAnswers
from launcher.core.capabilities import Capabilities
from launcher.core.deployment import Deployment
from launcher.core.launch import ClientEndpoint, LaunchPlan, ProcessSpec
from launcher.core.model_ref import ResolvedModel
from launcher.core.probe import Probe
from launcher.devices import DevicePlan

__all__ = [  # what tests and plugins import from here
    "HF_ID_RE", "INSTALL_HINT", "TAG_RE", "OllamaBackend", "OllamaOptions", "PullProgress", "TagTable", "canonical",
    "gguf_tag", "has_model", "human_bytes", "load_tag_table", "model_source", "progress_lines",
]  # fmt: skip

Report = Callable[[str], None]

INSTALL_HINT = (
    "install Ollama (https://ollama.com/download; on Linux: curl -fsSL https://ollama.com/install.sh | sh), "
    "or set `ollama_bin: /path/to/ollama` under `ollama:` in the deployment YAML, or start an Ollama on the port "
    "yourself (modelserve then reuses it)"
)


class OllamaOptions(BackendOptions):
    """Ollama's own settings (YAML section ``ollama:``); server settings go in backend_args."""

    ollama_bin: str | None = Field(default=None, description="the ollama executable; default: `ollama` from PATH")


class OllamaBackend(Backend):
    name: ClassVar[str] = "ollama"
    summary: ClassVar[str] = "Ollama (`ollama serve`, or one already running): /api + OpenAI /v1; pulls the model"
    # Messages is Ollama's own (>= 0.14, docs/api/anthropic-compatibility.mdx), without count_tokens;
    # Responses is not there yet (ollama#9659): modelserve's front translates those two.
    capabilities: ClassVar[Capabilities] = Capabilities(
        apis=("ollama", "openai"), streaming=True, tools=True, structured_output=True, messages="native",
        count_tokens="translated", responses="translated", tasks=("generate", "embed"),
        refusals=(("rerank", "Ollama has no rerank API (its most requested feature, not shipped)"),))
    Options: ClassVar[type[BackendOptions]] = OllamaOptions
    install_hint: ClassVar[str] = (
        "install Ollama (https://ollama.com/download) or set `ollama_bin:` under `ollama:` in the deployment YAML"
    )

    # served_model_name would copy the model under a new tag: a fleet's gateway rewrites `model`.
    keeps_model_name: ClassVar[bool] = True

    def options(self, deployment: Deployment) -> OllamaOptions:
        return OllamaOptions.model_validate(deployment.options.get(self.name, {}))

    def container(self, *, version: str) -> NoContainer:
        return NoContainer("Ollama pulls its model through its own API after the server starts")

    def url_probe(self, base: str, path: str, api_key: str | None) -> Probe | None:
        """Ollama's native API lives under /api; GET /api/version answers without a model."""
        return OllamaVersion(base) if path.startswith("/api") else None

    def inspect(self, *, python: str, deployment: Deployment | None, local: bool) -> EngineInfo:
        """The ``ollama`` executable (``ollama_bin``, else PATH) and its version; no Python involved."""
        configured = self.options(deployment).ollama_bin if deployment else None
        binary = find_binary(configured)
        if binary is None:
            if configured and os.sep in configured:
                where = f"ollama_bin {configured!r} is not an executable file"
            else:
                where = f"`{configured or DEFAULT_BINARY}` is not on PATH"
            return EngineInfo(Availability(False, None, f"{where}: {INSTALL_HINT}"))
        version = binary_version(binary)
        found = Availability(True, f"ollama {version}" if version else f"{binary} (version unknown)")
        return EngineInfo(found, {"binary": binary, "version": version})

    def resolve_model(self, deployment: Deployment, *, prepare: bool, progress: Report) -> ResolvedModel:
        src = model_source(deployment.model)
        if src.gguf is not None:
            return ResolvedModel(deployment.model, "local", str(src.gguf), src.tag, src.description)
        return ResolvedModel(deployment.model, "remote", None, src.tag,
                             f"{src.description}; pulled from the Ollama library if missing")  # fmt: skip

    def find_running(self, deployment: Deployment) -> str | None:
        base = deployment.base_url
        try:
            with urllib.request.urlopen(base + "/api/version", timeout=2) as resp:
                payload = json.loads(resp.read())
        except (OSError, ValueError, urllib.error.URLError):
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("version"), str):
            return None
        return f"Ollama {payload['version']} at {base}"

    def plan(
        self, *, deployment: Deployment, model: ResolvedModel, devices: DevicePlan, ctx: PlanContext
    ) -> LaunchPlan:
        dep = deployment
        served = dep.served_model_name or model.served_name
        base = f"http://{dep.client_host}:{dep.port}"
        notes: list[str] = []
        if dep.api_key:
            notes.append("Ollama does not check API keys: --api-key is written into the client entries but not "
                         "enforced; keep the server on loopback or behind a proxy that checks it")  # fmt: skip
        common: dict[str, Any] = {
            "backend": self.name,
            "api": self.capabilities.main_api,
            "served_model_name": served,
            "endpoints": {"ollama": base, "openai": f"{base}/v1"},
        }
        if dep.serves == "embed":
            # The vectors' size is the model's (`ollama show`): not known before it is pulled.
            model_ready: tuple[Probe, ...] = (OllamaModelListed(base, model=served), EmbeddingAnswers(base, model=served))
            common["clients"] = (ClientEndpoint("ollama_embedding", base, served),
                                 ClientEndpoint("openai_embedding", f"{base}/v1", served, dep.api_key))  # fmt: skip
            notes.append("embeddings: /api/embed, /api/embeddings and /v1/embeddings (`ollama show MODEL` gives "
                         "their size, its embedding_length)")  # fmt: skip
        else:
            model_ready = (OllamaModelListed(base, model=served), OpenAIChatAnswers(base, model=served))
            common["clients"] = (ClientEndpoint("ollama_chat", base, served),
                                 ClientEndpoint("openai_chat", f"{base}/v1", served, dep.api_key))  # fmt: skip
            common["tools"] = ("passed through to Ollama (/api/chat and /v1): the model's own template decides "
                               "whether it calls them (`ollama show MODEL` lists its capabilities)")  # fmt: skip
        if ctx.running is not None:
            notes.append(f"reusing {ctx.running}; modelserve will not stop it, and its own settings "
                         "(devices, OLLAMA_* variables, model store) stay as they are")  # fmt: skip
            return LaunchPlan(**common, processes=(), notes=tuple(notes), external=True,
                              engine={"server": ctx.running},
                              final_probes=(OllamaVersion(base), *model_ready))  # fmt: skip

        binary = str(ctx.engine.get("binary") or self.options(dep).ollama_bin or DEFAULT_BINARY)
        env: dict[str, str] = {"OLLAMA_HOST": host_port(dep.host, dep.port)}
        if devices.kind == "cuda" and devices.cuda_visible_devices:
            env["CUDA_VISIBLE_DEVICES"] = devices.cuda_visible_devices
            notes.append(f"{devices.describe()}; Ollama decides how many layers to offload")
        elif dep.device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = "-1"  # docs/gpu.mdx: an invalid id forces the CPU
            notes.append("CPU only (--device cpu): CUDA_VISIBLE_DEVICES=-1")
        else:
            notes.append("CPU (no GPU found)")
        env.update(server_env(dep.backend_args))
        env.update(dep.env)
        ready = (OllamaVersion(base),)
        engine = {"binary": binary}
        if ctx.engine.get("version"):
            engine["version"] = str(ctx.engine["version"])
        return LaunchPlan(**common, processes=(ProcessSpec("server", (binary, "serve"), env, ready),),
                          notes=tuple(notes), engine=engine, final_probes=model_ready)  # fmt: skip

    def after_start(self, *, deployment: Deployment, model: ResolvedModel, launch: LaunchPlan, report: Report,
                    deadline: float) -> None:  # fmt: skip
        """Make the served model present: pull the tag, or upload and create the GGUF file."""
        src = model_source(deployment.model)
        served = launch.served_model_name
        base = launch.endpoints["ollama"]
        present = OllamaAPI(base, deadline=deadline, what="listing models").tags()
        if src.gguf is not None:
            create_from_gguf(base, src.gguf, served, report=report, deadline=deadline)
            return
        if has_model(present, served):
            report(f"  {served} is already in Ollama ({base})")
            return
        if not has_model(present, src.tag):
            pull(base, src.tag, report=report, deadline=deadline)
        if canonical(served) != canonical(src.tag):
            api = OllamaAPI(base, deadline=deadline, what=f"copying {src.tag} to {served}")
            status, payload = api.json("POST", "/api/copy", {"source": src.tag, "destination": served})
            if status != 200:
                raise api.error(status, payload)
            report(f"  copied {src.tag} to {served} (served_model_name)")
