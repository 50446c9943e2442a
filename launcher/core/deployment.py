"""The Deployment: what every backend shares. Backend-only settings live in that backend's own
section (``options[backend_name]``), validated by the backend's options model (see ``spec``)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from launcher.core.names import Task

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
DEVICE_RE = re.compile(r"^(auto|cpu|cuda|cuda:\d+(,\d+)*)$")
ADDRESS_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}$")


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


class RaySettings(StrictModel):
    """A Ray cluster the engine spreads over (YAML ``ray:``). With it, ``gpus`` counts the GPUs of
    each node: tensor parallel within a node, pipeline parallel across ``nodes``."""

    address: str | None = Field(
        default=None, description="the head's HOST:PORT (GCS); default: the cluster this machine joined"
    )
    nodes: int = Field(default=1, ge=1, description="nodes the model is split across (pipeline parallel)")
    image: str | None = Field(default=None, description="container image for KubeRay manifests (ray and vLLM in it)")

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is not None and v != "auto" and not ADDRESS_RE.match(v):
            raise ValueError("expected HOST:PORT of the Ray head (e.g. 10.0.0.1:6379), or auto")
        return v

    @property
    def port(self) -> int:
        """The head's GCS port (Ray's default 6379 when the address names none)."""
        if self.address and self.address != "auto":
            return int(self.address.rsplit(":", 1)[1])
        return 6379


class Deployment(StrictModel):
    """One model server: what to serve, with which engine, where, and for which clients."""

    model: str = Field(min_length=1, description="local folder, HF/ModelScope ID, or built-in alias")
    name: str | None = Field(default=None, description="deployment name; default: from the model")
    backend: str = "auto"
    task: Task | None = Field(default=None, description="generate | embed | rerank; default: what the model folder "
                              "says (a sentence-transformers folder: embed; a one-label classifier: rerank), else generate")
    device: str = "auto"
    gpus: int | None = Field(default=None, ge=1, description="how many GPUs (--device cuda picks the freest)")
    force: bool = Field(default=False, description="start even when the memory estimate says it will not fit")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    api_key: str | None = None
    timeout: float = Field(default=600, gt=0, description="seconds to wait for readiness")
    stop_timeout: float = Field(default=10, gt=0, description="seconds between SIGTERM and SIGKILL")
    restart_limit: int = Field(default=5, ge=0, description="run: failures within restart_window, with no stable minute between, before giving up")
    restart_window: float = Field(default=300, gt=0, description="run: seconds over which failures are counted")
    served_model_name: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    threads: int | None = Field(default=None, ge=1, description="CPU threads for the engine")
    max_model_len: int | None = Field(default=None, ge=16, description="context length the engine reserves for")
    python: str | None = Field(default=None, description="interpreter that runs the engine")
    env: dict[str, str] = Field(default_factory=dict)
    backend_args: dict[str, Any] = Field(default_factory=dict)
    agentscope: AgentScopeSettings = Field(default_factory=AgentScopeSettings)
    fleet: str | None = Field(default=None, description="the fleet whose gateway runs this member (set by it)")
    ray: RaySettings | None = Field(default=None, description="run across the nodes of a Ray cluster (vLLM)")
    # Backend name -> that backend's own settings (a YAML section named after it), checked by
    # the backend's options model when the spec is loaded.
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)

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
    def serves(self) -> Task:
        """The task a plan serves: ``task`` as the launcher decided it (from the model when the spec
        names none; ``lifecycle.choose``), generate when nothing decided it."""
        return self.task or "generate"

    @property
    def deployment_name(self) -> str:
        return self.name or default_name(self.model)

    @property
    def client_host(self) -> str:
        return client_host(self.host)

    @property
    def base_url(self) -> str:
        return f"http://{self.client_host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")


def client_host(host: str) -> str:
    """The address a client on this machine uses for a server bound to ``host``: a wildcard bind
    is reached on loopback, an IPv6 address in brackets."""
    if host in ("0.0.0.0", "", "*"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def default_name(model: str) -> str:
    base = model.rstrip("/").split("/")[-1] or "model"
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-._").lower() or "model"
    return base[:63]
