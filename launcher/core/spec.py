"""The Deployment model: ``configs/defaults.yaml`` < the user's YAML file < command-line flags.

``load()`` returns one validated :class:`Deployment` plus, for every top-level value, where it
came from (``"command line"``, ``"prod.yaml:7"``, ``"defaults.yaml:3"``), so a summary or an
error can say why a value is what it is. Unknown keys and wrong types are rejected with
``FILE:LINE key: message``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from launcher import resources
from launcher.errors import ConfigError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+(,\d+)*)$")
CLI = "command line"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class AgentScopeSettings(StrictModel):
    """What ``up`` writes into the AgentScope 0.x ``model_config.json``."""

    config: str | None = Field(
        default="./model_config.json", description="file to merge the entries into; null: write none"
    )
    config_name: str | None = Field(default=None, description="entry name prefix; default: the deployment name")
    request_timeout: float = Field(default=300, gt=0, description="client read timeout in seconds")
    max_tokens: int = Field(default=512, gt=0, description="max new tokens per reply")
    temperature: float = Field(default=0.7, ge=0, le=2)


class Deployment(StrictModel):
    """One model server: what to serve, with which engine, where, and for which clients."""

    model: str = Field(min_length=1, description="local folder, HF/ModelScope ID, or built-in alias")
    name: str | None = Field(default=None, description="deployment name; default: from the model")
    backend: str = "auto"
    device: str = "auto"
    gpus: int | None = Field(default=None, ge=1, description="how many GPUs (--device cuda picks the freest)")
    force: bool = Field(default=False, description="start even when the memory estimate says it will not fit")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    api_key: str | None = None
    timeout: float = Field(default=600, gt=0, description="seconds to wait for readiness")
    stop_timeout: float = Field(default=10, gt=0, description="seconds between SIGTERM and SIGKILL")
    restart_limit: int = Field(default=5, ge=0, description="run: failures within restart_window before giving up")
    restart_window: float = Field(default=300, gt=0, description="run: seconds over which failures are counted")
    served_model_name: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    threads: int | None = Field(default=None, ge=1, description="CPU threads for the engine")
    max_model_len: int | None = Field(default=None, ge=16, description="context length the engine reserves for")
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1, description="vLLM: share of GPU memory")
    max_batch_size: int = Field(default=8, ge=1, le=256)
    max_new_tokens_limit: int = Field(default=4096, ge=1)
    python: str | None = Field(default=None, description="interpreter that runs the engine")
    conv_template: str | None = Field(default=None, description="FastChat: conversation template")
    worker: Literal["model", "vllm"] = Field(default="model", description="FastChat: model_worker or vllm_worker")
    ollama_bin: str | None = Field(default=None, description="Ollama: the ollama executable [from PATH]")
    env: dict[str, str] = Field(default_factory=dict)
    backend_args: dict[str, Any] = Field(default_factory=dict)
    agentscope: AgentScopeSettings = Field(default_factory=AgentScopeSettings)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not NAME_RE.match(v):
            raise ValueError("use letters, digits, '.', '_' or '-' (at most 63, starting with a letter or digit)")
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not DEVICE_RE.match(v):
            raise ValueError("expected auto, cpu, cuda or cuda:0[,1...]")
        return v

    @property
    def deployment_name(self) -> str:
        return self.name or default_name(self.model)

    @property
    def client_host(self) -> str:
        """The address a client on this machine uses: a wildcard bind is reached on loopback."""
        if self.host in ("0.0.0.0", "", "*"):
            return "127.0.0.1"
        if self.host == "::":
            return "[::1]"
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def base_url(self) -> str:
        return f"http://{self.client_host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")


def default_name(model: str) -> str:
    base = model.rstrip("/").split("/")[-1] or "model"
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-._").lower() or "model"
    return base[:63]


@dataclass
class LoadedSpec:
    deployment: Deployment
    sources: dict[str, str] = field(default_factory=dict)

    def source(self, key: str) -> str:
        return self.sources.get(key, "built-in default")


# ---- YAML with line numbers ----------------------------------------------------------------


@dataclass
class YamlDoc:
    path: Path
    data: dict[str, Any]
    lines: dict[tuple[str, ...], int]  # key path -> 1-based line of the key

    def where(self, path: tuple[str, ...]) -> str | None:
        while path:
            if path in self.lines:
                return f"{self.path}:{self.lines[path]}"
            path = path[:-1]
        return None


def read_yaml(path: Path) -> YamlDoc:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", "check the path given to -c") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: not valid YAML: {exc.problem}", "fix the YAML syntax there") from exc
    if node is None:
        return YamlDoc(path, {}, {})
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(
            f"{path}:{node.start_mark.line + 1}: the file must be a mapping of settings", "see configs/*.yaml"
        )
    lines: dict[tuple[str, ...], int] = {}
    _index(node, (), lines, path)
    data = yaml.safe_load(text) or {}
    return YamlDoc(path, data, lines)


def _index(node: yaml.MappingNode, prefix: tuple[str, ...], out: dict[tuple[str, ...], int], path: Path) -> None:
    for key_node, value_node in node.value:
        key = (*prefix, str(key_node.value))
        if key in out:
            raise ConfigError(
                f"{path}:{key_node.start_mark.line + 1} {'.'.join(key)}: duplicate key "
                f"(first at line {out[key]})",
                "keep one of them",
            )
        out[key] = key_node.start_mark.line + 1
        if isinstance(value_node, yaml.MappingNode):
            _index(value_node, key, out, path)


# ---- merging and validation ----------------------------------------------------------------


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load(
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    defaults_file: Path | None = None,
) -> LoadedSpec:
    """Build a validated Deployment from defaults, an optional YAML file and CLI overrides.

    ``overrides`` holds only the flags the user actually gave (None means "not given"); keys may
    be dotted (``"agentscope.config"``).
    """
    layers: list[tuple[str, YamlDoc | None, dict[str, Any]]] = []
    defaults: YamlDoc = read_yaml(defaults_file or resources.config_path("defaults.yaml"))
    layers.append(("defaults", defaults, defaults.data))
    if config_file is not None:
        user = read_yaml(Path(config_file))
        layers.append(("file", user, user.data))
    cli: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        target = cli
        *parents, last = key.split(".")
        for p in parents:
            target = target.setdefault(p, {})
        target[last] = value
    layers.append(("cli", None, cli))

    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for kind, doc, data in layers:
        merged = _deep_merge(merged, data)
        for key in data:
            if kind == "cli":
                sources[key] = CLI
            elif doc is not None:
                sources[key] = doc.where((key,)) or str(doc.path)

    try:
        deployment = Deployment.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, layers), _hint(exc)) from None
    return LoadedSpec(deployment, sources)


def _format_errors(exc: ValidationError, layers: list[tuple[str, YamlDoc | None, dict[str, Any]]]) -> str:
    out: list[tuple[int, str]] = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        dotted = ".".join(loc) or "(top level)"
        where = _origin(loc, layers)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + _suggest(loc)
        elif err["type"] == "missing":
            msg = "required, but not given (use -m/--model or put it in the YAML file)"
        line = re.search(r":(\d+)$", where)
        out.append((int(line.group(1)) if line else 0, f"{where} {dotted}: {msg}" if where else f"{dotted}: {msg}"))
    return "invalid deployment spec:\n  " + "\n  ".join(text for _, text in sorted(out))


def _origin(loc: tuple[str, ...], layers: list[tuple[str, YamlDoc | None, dict[str, Any]]]) -> str:
    # The value that failed came from the last layer that set it.
    for kind, doc, data in reversed(layers):
        node: Any = data
        found = True
        for part in loc:
            if isinstance(node, dict) and part in node:
                node = node[part]
            else:
                found = False
                break
        if found and loc:
            if kind == "cli" or doc is None:
                return "command line:"
            return doc.where(loc) or str(doc.path)
    return ""


def _suggest(loc: tuple[str, ...]) -> str:
    import difflib

    model: type[BaseModel] = Deployment
    if len(loc) == 2 and loc[0] == "agentscope":
        model = AgentScopeSettings
    elif len(loc) != 1:
        return ""
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _hint(exc: ValidationError) -> str:
    fields = ", ".join(sorted(Deployment.model_fields))
    return f"fix the values above; known keys: {fields}"
