"""A fleet: several deployments behind one gateway port, loaded on demand.

``load_fleet()`` reads a fleet YAML file (one with a ``deployments:`` list) and checks all of it
before anything starts: the gateway and policy sections, every member as a full deployment spec
(``spec.load`` on the member's part of the file, so its errors keep their lines), and the rules
that span members (unique names and model ids, no port clashes, ``max_loaded`` not below the
preloaded members). Every error reads ``FILE:LINE key: message``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from launcher.core.deployment import NAME_RE, AgentScopeSettings, StrictModel, default_name
from launcher.core.deployment_spec import LoadedSpec, Loc, YamlDoc, load, read_yaml, sub_document
from launcher.core.errors import ConfigError

LOOPBACK = "127.0.0.1"
FLEET_ONLY_KEYS = ("preload",)  # member keys the gateway reads, not the deployment


class GatewaySettings(StrictModel):
    host: str = LOOPBACK
    port: int = Field(default=8000, ge=1, le=65535)
    api_key: str | None = Field(default=None, description="required as 'Authorization: Bearer KEY' but on /health")
    header_timeout: float = Field(default=30.0, gt=0, description="seconds a client may take to send a request's "
                                  "headers, or stay idle between requests; then the gateway closes the connection")


class Policy(StrictModel):
    max_loaded: int = Field(default=0, ge=0, description="members loaded at once; 0: no limit")
    idle_ttl: float = Field(default=0, ge=0, description="seconds idle before a member stops; 0: never")
    start_timeout: float = Field(default=600, gt=0, description="seconds a request waits for a cold member")
    max_concurrency: int = Field(default=32, ge=1, description="requests in flight per member")
    max_queue: int = Field(default=256, ge=0, description="requests waiting per member beyond that; then 429")


class FleetFile(StrictModel):
    name: str
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    policy: Policy = Field(default_factory=Policy)
    agentscope: AgentScopeSettings = Field(default_factory=AgentScopeSettings)
    deployments: list[dict[str, Any]] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v) or "." in v:
            raise ValueError("use letters, digits, '_' or '-' (at most 63, starting with a letter or digit)")
        return v


@dataclass
class Member:
    name: str  # as written in the fleet (``chat``); its deployment is ``FLEET.NAME``
    spec: LoadedSpec
    preload: bool
    port: int | None  # given in the file; None: chosen when it starts
    line: int  # where the member starts in the file

    @property
    def model_id(self) -> str:
        """What clients send as ``model``: its served_model_name when given, else its name."""
        return self.spec.deployment.served_model_name or self.name

    @property
    def raw(self) -> dict[str, Any]:
        """The member's own settings as written, minus the fleet-only keys."""
        return {k: v for k, v in self._raw.items() if k not in FLEET_ONLY_KEYS}

    _raw: dict[str, Any]


@dataclass
class Fleet:
    path: Path
    name: str
    gateway: GatewaySettings
    policy: Policy
    agentscope: AgentScopeSettings
    members: list[Member]

    def member_deployment(self, member: Member) -> str:
        return f"{self.name}.{member.name}"


def is_fleet_file(path: str | Path) -> bool:
    """A YAML file with a ``deployments:`` list is a fleet; anything else is one deployment."""
    doc = read_yaml(Path(path))
    return "deployments" in doc.data


def load_fleet(path: str | Path, *, sections: Mapping[str, type[BaseModel]], defaults_file: Path | None = None,
               backends: tuple[str, ...] = ()) -> Fleet:  # fmt: skip
    """Read and check a whole fleet file. ``backends``: the registered backend names."""
    doc = read_yaml(Path(path))
    try:
        top = FleetFile.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(_located(doc, [(tuple(map(str, e["loc"])), _msg(e)) for e in exc.errors()]),
                          "fix the fleet file there; see README: Fleets") from None  # fmt: skip
    errors: list[tuple[Loc, str]] = []
    members: list[Member] = []
    for i, raw in enumerate(top.deployments):
        member = _member(doc, i, raw, sections, defaults_file, backends, errors)
        if member is not None:
            members.append(member)
    if not errors:
        errors += _across(top, members)
    if errors:
        raise ConfigError(_located(doc, errors), "fix the fleet file there; see README: Fleets")
    return Fleet(Path(path).absolute(), top.name, top.gateway, top.policy, top.agentscope, members)


def _member(doc: YamlDoc, i: int, raw: dict[str, Any], sections: Mapping[str, type[BaseModel]],
            defaults_file: Path | None, backends: tuple[str, ...], errors: list[tuple[Loc, str]]) -> Member | None:  # fmt: skip
    at: Loc = ("deployments", str(i))
    preload = raw.get("preload", False)
    if not isinstance(preload, bool):
        errors.append(((*at, "preload"), "expected true or false"))
    backend = raw.get("backend", "auto")
    if backends and backend != "auto" and backend not in backends:
        close = difflib.get_close_matches(str(backend), backends, n=1)
        errors.append(((*at, "backend"), f"unknown backend {backend!r}" + (f" (did you mean {close[0]!r}?)" if close
                                                                          else f"; known: {', '.join(backends)}")))  # fmt: skip
    if raw.get("host", LOOPBACK) not in (LOOPBACK, "localhost"):
        errors.append(((*at, "host"), "members listen on loopback; the gateway's host is what clients reach "
                                      "(set gateway.host)"))  # fmt: skip
    given = {k: v for k, v in raw.items() if k not in FLEET_ONLY_KEYS}
    try:
        loaded = load(sections=sections, defaults_file=defaults_file, document=sub_document(doc, at, given))
    except ConfigError as exc:  # already FILE:LINE key: message, one per line
        errors += [(("!",), line) for line in exc.message.splitlines()[1:]]
        return None
    name = raw.get("name") or default_name(loaded.deployment.model)
    if "." in name:
        errors.append(((*at, "name"), "a member name may not contain '.' (its deployment is FLEET.NAME)"))
    port = raw.get("port") if isinstance(raw.get("port"), int) else None
    return Member(name, loaded, preload is True, port, doc.lines.get(at, 0), _raw=given)


def _across(top: FleetFile, members: list[Member]) -> list[tuple[Loc, str]]:
    errors: list[tuple[Loc, str]] = []
    seen_names: dict[str, int] = {}
    seen_ids: dict[str, int] = {}
    seen_ports: dict[int, str] = {top.gateway.port: "the gateway"}
    for i, m in enumerate(members):
        at: Loc = ("deployments", str(i))
        if m.name in seen_names:
            errors.append(((*at, "name"), f"duplicate member name {m.name!r} (also deployments[{seen_names[m.name]}])"))
        seen_names.setdefault(m.name, i)
        if m.model_id in seen_ids and seen_ids[m.model_id] != i:
            errors.append(((*at, "served_model_name"), f"model id {m.model_id!r} is also deployments[{seen_ids[m.model_id]}]'s"))  # fmt: skip
        seen_ids.setdefault(m.model_id, i)
        seen_ids.setdefault(m.name, i)
        if m.port is not None:
            if m.port in seen_ports:
                errors.append(((*at, "port"), f"port {m.port} is also {seen_ports[m.port]}'s (leave port out: "
                                              "members get a free one)"))  # fmt: skip
            seen_ports.setdefault(m.port, f"member {m.name!r}")
    preloaded = sum(m.preload for m in members)
    if top.policy.max_loaded and preloaded > top.policy.max_loaded:
        errors.append((("policy", "max_loaded"), f"{top.policy.max_loaded} is below the {preloaded} members marked "
                                                 "preload (raise it, or preload fewer)"))  # fmt: skip
    return errors


def _msg(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required"
    return str(err["msg"])


def _located(doc: YamlDoc, errors: list[tuple[Loc, str]]) -> str:
    out = []
    for loc, msg in errors:
        if loc == ("!",):  # a member's own spec error, located already
            text = msg.strip()
            head = text.split(" ", 1)[0]
            out.append((int(head.rsplit(":", 1)[1]) if head.rsplit(":", 1)[-1].isdigit() else 0, text))
            continue
        where = doc.where(loc) or str(doc.path)
        dotted = ".".join(loc) or "(top level)"
        out.append((int(where.rsplit(":", 1)[1]) if ":" in where else 0, f"{where} {dotted}: {msg}"))
    return "invalid fleet file:\n  " + "\n  ".join(text for _, text in sorted(out))
