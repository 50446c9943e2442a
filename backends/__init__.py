"""The backend registry: the ``modelserve.backends`` entry-point group, nothing else.

The five built-ins are entry points of the modelserve distribution itself (pyproject.toml), so
they are found exactly the way a third-party backend is, and that path runs on every command.
A third-party backend may not shadow a built-in name. Entries are ``module:Class`` strings,
imported only when a backend is used: listing names imports no backend module.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import BaseModel

    from backends.base import Backend

ENTRY_POINT_GROUP = "modelserve.backends"
OWN_DISTRIBUTION = "modelserve"

# Registered in-process (tests use `registered()`), after the entry points.
_EXTRA: dict[str, str] = {}


@dataclass(frozen=True)
class Entry:
    name: str
    target: str  # "module:Class"
    distribution: str  # who registered it ("modelserve" for the built-ins)

    @property
    def builtin(self) -> bool:
        return self.distribution == OWN_DISTRIBUTION


def entries() -> dict[str, Entry]:
    """Every registered backend by name: built-ins first, then third-party ones."""
    # Imported here: importlib.metadata costs `status` (which loads probes from this package) 10 ms.
    import importlib.metadata

    found: dict[str, Entry] = {}
    third: list[Entry] = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "?"
        entry = Entry(ep.name, ep.value, dist)
        if entry.builtin:
            found[ep.name] = entry
        else:
            third.append(entry)
    for entry in third:
        found.setdefault(entry.name, entry)
    for name, target in _EXTRA.items():
        found.setdefault(name, Entry(name, target, "registered in-process"))
    if not found:
        from launcher.core.errors import ConfigError  # here: the built-in server imports this package

        raise ConfigError(
            f"no backends are registered (the {ENTRY_POINT_GROUP!r} entry-point group is empty)",
            "reinstall modelserve (pip install -e . in a checkout): its metadata registers the built-ins",
        )
    return found


def names() -> list[str]:
    return list(entries())


def get(name: str) -> Backend:
    entry = entries().get(name)
    if entry is None:
        from launcher.core.errors import ConfigError

        raise ConfigError(
            f"unknown backend {name!r}",
            f"use one of: auto, {', '.join(entries())} (`modelserve backends` says which run here)",
        )
    module_name, _, class_name = entry.target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    backend: Backend = cls()
    return backend


def loaded() -> list[Backend]:
    """Every registered backend that imports, built-ins first. A broken plugin is left out: it
    must not stop a choice among the others (using it by name shows its import error)."""
    found = []
    for name in entries():
        try:
            found.append(get(name))
        except Exception:
            continue
    return found


def automatic(kind: str) -> list[Backend]:
    """What `-b auto` considers for device ``kind`` ("cpu" or "cuda"): highest priority first."""
    able = [b for b in loaded() if b.auto is not None and kind in b.auto.devices]
    return sorted(able, key=lambda b: -(b.auto.priority if b.auto else 0))


def on_ray(requested: str) -> Backend | None:
    """The backend that runs a deployment with ``ray:`` across nodes: ``requested`` when it can,
    else (``auto``) the first that declares ``multi_node``; None when none is registered."""
    able = [b.name for b in loaded() if b.multi_node]
    if requested != "auto" and requested not in able:
        from launcher.core.errors import ConfigError

        fix = f"use -b {able[0]}" if able else "install a backend that runs across nodes (`modelserve backends`)"
        raise ConfigError(f"ray: backend {requested} runs on one machine; only {', '.join(able) or 'none'} runs "
                          "across Ray nodes", f"{fix}, or remove the ray: section")  # fmt: skip
    if not able:
        return None
    return get(requested if requested != "auto" else able[0])


def option_models() -> dict[str, type[BaseModel]]:
    """Backend name -> its options model, for the spec loader. A backend that cannot be
    imported has no section (using it fails later with its import error)."""
    models: dict[str, type[BaseModel]] = {}
    for name in entries():
        try:
            models[name] = get(name).Options
        except Exception:  # a broken plugin must not stop other deployments from loading
            continue
    return models


def register(name: str, target: str) -> None:
    """Register ``target`` ("module:Class") as backend ``name`` in this process only."""
    _EXTRA[name] = target


@contextmanager
def registered(name: str, target: str) -> Iterator[None]:
    """Register ``target`` as backend ``name`` for the duration (tests, embedding)."""
    register(name, target)
    try:
        yield
    finally:
        _EXTRA.pop(name, None)
