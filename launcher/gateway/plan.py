"""What the gateway process is told to run: written by ``lifecycle.fleet`` as JSON, read here.

The gateway never plans a member itself (that needs the backends): each member comes with the
command that starts it (``modelserve up -c MEMBER.yaml``, to which the gateway adds a free port)
and the one that stops it (``modelserve down``), so every contract of a single deployment -
readiness, records, a failed start leaving nothing - holds for members too.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from launcher.core.fleet_spec import Policy


class MemberPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str  # as written in the fleet file; also its /llm/<name>/ route
    deployment: str  # its record: FLEET.NAME
    model_id: str  # what /v1/models lists
    aliases: list[str] = Field(default_factory=list)  # other `model` values that route here
    preload: bool = False
    port: int | None = None  # fixed in the fleet file; None: a free one at each start
    start_argv: list[str] = Field(default_factory=list)  # `--port N --json` is appended
    stop_argv: list[str] = Field(default_factory=list)
    api_key: str | None = None  # the member's own key, sent upstream in place of the client's
    post_path: str | None = None  # its POST route (/llm/), when it has one
    # Host memory it needs when it runs on the CPU (the launcher's estimate; 0: unknown, or a GPU
    # member, whose own `up` checks its fit and exits 12 when it will not).
    memory_bytes: int = 0
    # A server modelserve does not start or stop (the gateway benchmark's stand-in upstream).
    external_url: str | None = None
    external_model: str | None = None


class GatewayPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    host: str = "127.0.0.1"
    port: int
    api_key: str | None = None
    policy: Policy = Field(default_factory=Policy)
    members: list[MemberPlan]
    stop_timeout: float = 30.0  # per member stop
    header_timeout: float = 30.0  # a connection's headers (and any idle gap between requests) within this

    @classmethod
    def read(cls, path: Path) -> GatewayPlan:
        return cls.model_validate_json(path.read_text())
