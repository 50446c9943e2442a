"""`modelserve config`: a deployment's agent client config, rendered from its record and
written (merged by entry name where the format allows) into the user's file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from launcher.agents import config_files
from launcher.agents.format_names import SURFACE_OF
from launcher.agents.formats import Format, RenderedConfig, entry_base, render
from launcher.agents.rendered_config import CAVEAT_PREFIX
from launcher.core.deployment import AgentScopeSettings
from launcher.core.errors import ClientConfigError, DeploymentNotFound
from launcher.store import k8s_records, records


def find_record(name: str, *, k8s: bool = False) -> tuple[records.DeploymentRecord, list[str]]:
    """The deployment `config NAME` renders for, and notes about the choice: a running one first;
    else (or with ``k8s``) the one `modelserve k8s render` recorded, whose URLs are its Services'."""
    k8s_record = k8s_records.load(name)
    if k8s:
        if k8s_record is None:
            raise DeploymentNotFound(f"no Kubernetes render named {name!r}",
                                     "render it first: `modelserve k8s render -c FILE`")  # fmt: skip
        return k8s_record, [_k8s_note(k8s_record)]
    try:
        record = records.load(name)
    except DeploymentNotFound:
        if k8s_record is None:
            raise
        return k8s_record, [_k8s_note(k8s_record)]
    also = [f"{name} is also rendered for Kubernetes: --k8s gives that config"] if k8s_record else []
    return record, also


def _k8s_note(record: records.DeploymentRecord) -> str:
    return (f"rendered for Kubernetes (namespace {record.engine.get('namespace', 'default')}): the URLs are the "
            "Services' and answer inside the cluster")  # fmt: skip


def config_for(record: records.DeploymentRecord, fmt: Format, *, only: str | None = None,
               config_name: str | None = None, member: str | None = None, **overrides: Any) -> RenderedConfig:  # fmt: skip
    """Render ``fmt`` for ``record``. ``overrides``: max_tokens, temperature, request_timeout;
    None keeps the settings `up` wrote its entries with. ``member``: a fleet's model id (the
    fleet's first member when None)."""
    surface = SURFACE_OF.get(fmt)
    if surface is not None and record.surfaces.get(surface) == "no":
        title = "Anthropic Messages" if surface == "messages" else "OpenAI Responses"
        raise ClientConfigError(f"deployment {record.name!r} does not serve {title} (--format {fmt} needs it)",
                                "let modelserve start its engine (a reused server gets no translating front), or "
                                "use --format openai-env")  # fmt: skip
    given = {k: v for k, v in overrides.items() if v is not None}
    base_settings = {k: v for k, v in record.agentscope.items() if k in overrides}
    settings = AgentScopeSettings.model_validate({**base_settings, **given})
    written = [n for c in record.clients if c.kind == "agentscope" for n in c.names]
    caveat = f"{CAVEAT_PREFIX}cannot call tools: {record.tools}" if record.tools.startswith("not supported") else None
    endpoints = record.endpoints_for_clients()
    base = config_name or entry_base(record.name, written)
    notes: list[str] = []
    if record.members:  # a fleet: one member's entries, all through the gateway
        ids = list(dict.fromkeys(e.model_name for e in endpoints))
        chosen = member or ids[0]
        if chosen not in ids:
            raise ClientConfigError(f"fleet {record.name} has no member serving {chosen!r}",
                                    f"pass --member with one of: {', '.join(ids)}")  # fmt: skip
        if member is None and len(ids) > 1:
            notes.append(f"fleet {record.name}: rendered {chosen!r}; --member picks another ({', '.join(ids[1:])})")
        endpoints = [e for e in endpoints if e.model_name == chosen]
        base = config_name or f"{record.name}-{chosen}"
    elif member is not None:
        raise ClientConfigError(f"{record.name} is one deployment, not a fleet", "leave out --member")
    rendered = render(fmt, endpoints, settings, deployment=record.name, base=base, only=only, caveat=caveat)
    return replace(rendered, notes=(*notes, *rendered.notes)) if notes else rendered


def write(record: records.DeploymentRecord, rendered: RenderedConfig, path: Path) -> str:
    """Merge or create ``path``; returns what was done, for the user. Merged entries are
    recorded, so `down --forget-config` removes them as it does up's."""
    path = path.expanduser().absolute()
    if not path.parent.is_dir():
        raise ClientConfigError(f"the folder {path.parent} does not exist", "create it or choose another --write path")
    if rendered.write_mode == "merge-list":
        merged = config_files.merge(path, rendered.entries, option="--write")
        names = [e["config_name"] for e in rendered.entries]
        _remember(record, "agentscope", path, names)
        return f"merged {', '.join(names)} into {path} ({len(merged) - len(names)} other entries kept)"
    if rendered.write_mode == "merge-object":
        merged_named = config_files.merge_object(path, rendered.named)
        _remember(record, "agentfabric", path, list(rendered.named))
        kept = len(merged_named) - len(rendered.named)
        return f"merged {', '.join(rendered.named)} into {path} ({kept} other entries kept)"
    # A key in a new file is readable by its owner only (merged files keep their mode, as `up` does).
    if config_files.write_new(path, rendered.text, mode=0o600 if rendered.holds_secret else 0o644):
        return f"wrote {path}"
    return f"{path} already holds this config; left as is"


def _remember(record: records.DeploymentRecord, kind: str, path: Path, names: list[str]) -> None:
    if record.status == k8s_records.RENDERED:
        return  # nothing runs here: no `down --forget-config` to undo it, and no local record to keep it in
    target = str(path)
    kept = [c for c in record.clients if not (c.kind == kind and c.path == target)]
    record.clients = [*kept, records.ClientRecord(kind, target, names)]
    records.save(record)
