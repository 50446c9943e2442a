"""Agent config files, merged safely: the one writer behind `up` and `config --write`.

AgentScope 0.x reads a JSON file holding one config object or a list of them, keyed by
``config_name`` (shared/reference/agentscope-clients.md §3); AgentFabric reads an object keyed
by model name. Merging keeps every entry it does not own, replaces entries with the same name in
place, and appends new ones. The file is rewritten atomically while holding an exclusive lock on
its folder, so concurrent writers never lose each other's entries and a reader never sees half a
file. A file that is not valid JSON, or not of the expected shape, is never overwritten: the
caller gets the line and column.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from launcher.core.errors import ClientConfigError
from launcher.store.files import create_new, locked, write_atomic


@contextlib.contextmanager
def _locked(path: Path, option: str = "--agentscope-config") -> Iterator[None]:
    """An exclusive lock on the folder holding ``path``.

    Not on the file itself: it is replaced by rename, and a lock on the old inode would not stop
    the next writer. A folder lock also leaves no lock file behind in the user's project.
    """
    if not path.parent.is_dir():
        raise ClientConfigError(
            f"cannot open the folder of {path}: it does not exist", f"create {path.parent} or choose another {option}"
        )
    with locked(path.parent):
        yield


def _load_json(path: Path, option: str) -> Any:
    """The parsed file; None when it does not exist or is blank. Invalid JSON raises
    ClientConfigError with line and column, and the file is never touched."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ClientConfigError(f"cannot read {path}: {exc.strerror}", "check its permissions") from None
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClientConfigError(
            f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg}); the file was left untouched",
            f"fix {path} at line {exc.lineno}, or point {option} at another file",
        ) from None


def read_entries(path: Path, option: str = "--agentscope-config") -> list[dict[str, Any]]:
    """The entries in ``path`` ([] when it does not exist or is empty). Raises ClientConfigError
    naming the line and column when it is not valid JSON or not AgentScope model configs."""
    data = _load_json(path, option)
    if data is None:
        return []
    if isinstance(data, dict):
        if "config_name" not in data:
            raise ClientConfigError(
                f"{path} holds a JSON object that is not an AgentScope model config (no config_name); left untouched",
                "use a file holding a list of model configs (AgentFabric files are written with `modelserve config`)",
            )
        data = [data]
    if not isinstance(data, list):
        raise ClientConfigError(
            f"{path} holds JSON {type(data).__name__}, not a list of model configs; left untouched",
            f"point {option} at another file",
        )
    for i, item in enumerate(data):
        if not isinstance(item, dict) or "config_name" not in item:
            raise ClientConfigError(
                f"{path}: element {i} is not a model config with a config_name; left untouched",
                f"fix element {i} of {path}",
            )
    return data


def check_mergeable(path: Path) -> None:
    """Fail early (before a server starts) if ``path`` could not be merged into later."""
    read_entries(path)
    folder = path.parent if path.parent != Path("") else Path(".")
    if not folder.is_dir():
        raise ClientConfigError(f"the folder {folder} does not exist", "create it or choose another --agentscope-config")
    if not os.access(folder, os.W_OK):
        raise ClientConfigError(f"cannot write to {folder}", "choose another --agentscope-config")


def merge(
    path: Path, entries: Sequence[dict[str, Any]], *, remove: Sequence[str] = (), option: str = "--agentscope-config"
) -> list[dict[str, Any]]:
    """Replace entries with the same config_name, append new ones, drop ``remove``; atomically.
    ``option``: the flag that chose the file, named in error hints."""
    path = path.absolute()
    with _locked(path, option):
        current = read_entries(path, option)
        by_name = {e["config_name"]: e for e in entries}
        out: list[dict[str, Any]] = []
        for item in current:
            name = item["config_name"]
            if name in remove:
                continue
            out.append(by_name.pop(name) if name in by_name else item)
        out.extend(e for e in entries if e["config_name"] in by_name)
        _write_json(path, out)
        return out


def remove_entries(path: Path, names: Sequence[str]) -> int:
    """Drop the named entries; returns how many were there. A missing file is fine."""
    path = path.absolute()
    if not path.exists():
        return 0
    with _locked(path):
        current = read_entries(path)
        kept = [e for e in current if e["config_name"] not in names]
        if len(kept) != len(current):
            _write_json(path, kept)
        return len(current) - len(kept)


def _write_json(path: Path, value: Any) -> None:
    """A merge never widens the file's mode (a file its owner made private stays private), and
    a file that holds an API key is readable by its owner only (0600), new or merged into."""
    mode = 0o644
    with contextlib.suppress(FileNotFoundError):
        mode = path.stat().st_mode & 0o777
    if holds_secret(value):
        mode &= 0o700
    write_atomic(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n", mode=mode, keep_mode=False)


NOT_SECRET = (None, "", "EMPTY")  # what clients are given when the server wants no key


def holds_secret(value: Any) -> bool:
    """An API key or an Authorization header anywhere in a config value."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "api_key" and item not in NOT_SECRET:
                return True
            if key.lower() == "authorization" and item:
                return True
            if holds_secret(item):
                return True
    elif isinstance(value, list):
        return any(holds_secret(item) for item in value)
    return False


# ---- files keyed by name (AgentFabric's config/model_config.json) ----------------------------


def read_object(path: Path) -> dict[str, dict[str, Any]]:
    """The named entries in ``path`` ({} when it does not exist or is empty). Raises
    ClientConfigError naming the line and column when it is not valid JSON, or when it is not a
    JSON object whose values are all objects."""
    data = _load_json(path, "--write")
    if data is None:
        return {}
    if isinstance(data, list):
        raise ClientConfigError(
            f"{path} holds a JSON list (AgentScope model configs?), not an object keyed by model name; left untouched",
            "write AgentFabric entries into its config/model_config.json, or use --format agentscope for this file",
        )
    if not isinstance(data, dict):
        raise ClientConfigError(
            f"{path} holds JSON {type(data).__name__}, not an object keyed by model name; left untouched",
            "choose another --write path",
        )
    for name, item in data.items():
        if not isinstance(item, dict):
            raise ClientConfigError(
                f"{path}: {name!r} is not a model entry (a JSON object); left untouched",
                f"fix {name!r} in {path}",
            )
    return data


def merge_object(path: Path, entries: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Set ``entries`` by name in the JSON object in ``path``: a name already there is replaced in
    place, new names are appended, every other name is kept; atomically, under the folder lock."""
    path = path.absolute()
    with _locked(path):
        current = read_object(path)
        current.update(entries)  # dict order: replaced keys keep their place, new ones go last
        _write_json(path, current)
        return current


def write_new(path: Path, text: str, *, mode: int = 0o644) -> bool:
    """Create ``path`` holding ``text``, complete or not at all; never replace a file. Returns
    False when the file already holds exactly ``text``; raises ClientConfigError when it holds
    anything else (for content that cannot be merged: Python snippets, env lines)."""
    path = path.absolute()
    try:
        create_new(path, text, mode=mode)
    except FileExistsError:
        with contextlib.suppress(OSError):
            if path.read_text() == text:
                return False
        raise ClientConfigError(
            f"{path} exists and this format cannot be merged into a file; it was left untouched",
            "choose a new --write path, or delete the file first",
        ) from None
    except OSError as exc:  # a missing folder, or a file system without hard links
        raise ClientConfigError(f"cannot create {path}: {exc.strerror}", "choose another --write path") from None
    return True


def remove_object_entries(path: Path, names: Sequence[str]) -> int:
    """Drop the named entries from an object-keyed file (AgentFabric); returns how many were there."""
    path = path.absolute()
    if not path.exists():
        return 0
    with _locked(path, "--write"):
        current = read_object(path)
        kept = {k: v for k, v in current.items() if k not in names}
        if len(kept) != len(current):
            _write_json(path, kept)
        return len(current) - len(kept)
