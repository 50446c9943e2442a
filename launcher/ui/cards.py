"""What the page shows of each deployment, fleet and member: wire models built from a record and
what was seen of it this tick. Never a key: records hold them, these models have no field for one."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel

from launcher.store.records import DeploymentRecord

# record.endpoints names that are not API surfaces a client calls
NOT_SURFACES = frozenset({"metrics", "fleet", "health", "controller"})
# deployment_state's words -> the page's
STATES = {"running": "ready", "starting": "starting", "restarting": "restarting", "failed": "failed", "exited": "exited"}
# the gateway's member states -> the page's
MEMBER_STATES = {"stopped": "unloaded", "starting": "starting", "ready": "ready", "stopping": "stopping"}


class Card(BaseModel):
    name: str
    kind: Literal["deployment", "fleet"]
    backend: str
    model: str
    served_model_name: str
    device: str
    state: str  # starting | ready | restarting | failed | exited
    last_error: str | None = None
    uptime_s: float | None = None
    endpoint: str
    surfaces: dict[str, str]  # name -> URL
    memory_bytes: int | None = None
    pids: list[int]
    mode: str  # detached (`up`) | foreground (`run`)
    restarts: int = 0
    log_roles: list[str]  # the processes whose logs the log view offers
    chat: bool  # an OpenAI route the playground can stream from
    embeds: bool = False
    fleet: str | None = None
    members: list[MemberCard] = []
    fleet_error: str | None = None  # the gateway did not say how its members are


class MemberCard(BaseModel):
    name: str  # as in the fleet file (its /llm/<name>/ route, the gateway's load/unload name)
    deployment: str  # its own record: FLEET.NAME
    model: str  # the id clients send
    state: str  # unloaded | starting | ready | stopping
    in_flight: int = 0
    waiting: int = 0
    requests: int = 0
    errors: int = 0
    loads: int = 0
    last_error: str | None = None
    detail: Card | None = None  # its deployment's own card while it runs


def card_of(record: DeploymentRecord, *, state: str, dead: list[str], memory: int | None,
            now: float | None = None) -> Card:  # fmt: skip
    now = time.time() if now is None else now
    last_error = record.last_exit
    if dead and not last_error:
        last_error = f"the {', '.join(dead)} process exited"
    return Card(
        name=record.name, kind="fleet" if record.members else "deployment", backend=record.backend,
        model=record.model, served_model_name=record.served_model_name, device=record.device,
        state=STATES.get(state, state), last_error=last_error if state in ("failed", "exited", "restarting") else None,
        uptime_s=round(now - record.started_at, 1) if state != "exited" else None, endpoint=record.base_url,
        surfaces={k: v for k, v in record.endpoints.items() if k not in NOT_SURFACES}, memory_bytes=memory,
        pids=[p.pid for p in record.processes], mode=record.mode, restarts=record.restarts,
        log_roles=[p.role for p in record.processes], chat="openai" in record.endpoints and _task(record) == "generate",
        embeds="openai" in record.endpoints and _task(record) == "embed",
        fleet=record.fleet,
    )  # fmt: skip


def _task(record: DeploymentRecord) -> str:
    """What the deployment's model does: generate, embed or rerank. Records from issue 21's tasks
    on keep ``task``; before that the resolved spec has it where the user set it."""
    return str(getattr(record, "task", None) or record.spec.get("task") or "generate")


def member_cards(fleet: dict[str, Any], details: dict[str, Card]) -> list[MemberCard]:
    """The gateway's GET /fleet rows as cards, each with its running deployment's own card."""
    out = []
    for m in fleet.get("members", []):
        out.append(MemberCard(
            name=m["name"], deployment=m["deployment"], model=m["model"],
            state=MEMBER_STATES.get(m["state"], m["state"]), in_flight=m.get("in_flight", 0),
            waiting=m.get("waiting", 0), requests=m.get("requests", 0), errors=m.get("errors", 0),
            loads=m.get("loads", 0), last_error=m.get("last_error"), detail=details.get(m["deployment"]),
        ))  # fmt: skip
    return out


Card.model_rebuild()  # Card and MemberCard refer to each other
