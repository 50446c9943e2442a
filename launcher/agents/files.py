"""Agent client configs: render the entries and merge them into the user's file safely.

AgentScope 0.x reads a JSON file holding one config object or a list of them, keyed by
``config_name`` (shared/reference/agentscope-clients.md §3). Merging keeps every entry it does
not own, replaces entries with the same ``config_name`` in place, and appends new ones. The
file is rewritten through a temp file + rename while holding an exclusive lock, so concurrent
writers never lose each other's entries and a reader never sees half a file. A file that is not
valid JSON, or not a config list, is never overwritten: the caller gets the line and column.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from backends.base import ClientEndpoint
from launcher.errors import ClientConfigError
from launcher.spec import AgentScopeSettings

SUFFIX = {"post_api_chat": "post", "openai_chat": "openai", "ollama_chat": "ollama"}


def entry_name(base: str, endpoint: ClientEndpoint) -> str:
    return f"{base}-{SUFFIX[endpoint.kind]}"


def agentscope_entry(endpoint: ClientEndpoint, settings: AgentScopeSettings, base: str) -> dict[str, Any]:
    """One AgentScope 0.x model config (the fields 0.1.6 accepts; see the reference for traps)."""
    name = entry_name(base, endpoint)
    if endpoint.kind == "post_api_chat":
        # model_name is required since 0.1.2 (the upstream Flask configs fail without it); it is
        # not sent in the body. json_args must hold only generate() kwargs: the server passes
        # them to generate().
        json_args: dict[str, Any] = {"max_new_tokens": settings.max_tokens}
        if settings.temperature > 0:
            json_args.update({"temperature": settings.temperature, "do_sample": True})
        else:
            json_args["do_sample"] = False
        entry: dict[str, Any] = {
            "config_name": name,
            "model_type": "post_api_chat",
            "model_name": endpoint.model_name,
            "api_url": endpoint.url,
            "json_args": json_args,
            # `timeout` at the top level is accepted but never used by 0.1.6; post_args is.
            "post_args": {"timeout": settings.request_timeout},
        }
        if endpoint.api_key:
            entry["headers"] = {"Authorization": f"Bearer {endpoint.api_key}"}
        return entry
    if endpoint.kind == "openai_chat":
        return {
            "config_name": name,
            "model_type": "openai_chat",
            "model_name": endpoint.model_name,  # sent as "model": must be the served name
            "api_key": endpoint.api_key or "EMPTY",  # the OpenAI SDK refuses to start without one
            "client_args": {"base_url": endpoint.url.rstrip("/") + "/", "timeout": settings.request_timeout},
            "generate_args": {"max_tokens": settings.max_tokens, "temperature": settings.temperature},
        }
    if endpoint.kind == "ollama_chat":
        # Any key beyond these reaches ollama.Client(**kwargs) and crashes it.
        return {
            "config_name": name,
            "model_type": "ollama_chat",
            "model_name": endpoint.model_name,
            "options": {"temperature": settings.temperature, "num_predict": settings.max_tokens},
            "keep_alive": "5m",
            "host": endpoint.url,
        }
    raise ValueError(f"no AgentScope entry for {endpoint.kind}")


def agentscope_entries(
    endpoints: Sequence[ClientEndpoint], settings: AgentScopeSettings, base: str
) -> list[dict[str, Any]]:
    return [agentscope_entry(e, settings, base) for e in endpoints]


# ---- the file -------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(path: Path, option: str = "--agentscope-config") -> Iterator[None]:
    """An exclusive lock on the folder holding ``path``.

    Not on the file itself: it is replaced by rename, and a lock on the old inode would not stop
    the next writer. A folder lock also leaves no lock file behind in the user's project.
    """
    folder = path.parent
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise ClientConfigError(
            f"cannot open the folder of {path}: {exc.strerror}", f"create {folder} or choose another {option}"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


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
        _write_atomic(path, json.dumps(out, indent=2, ensure_ascii=False) + "\n")
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
            _write_atomic(path, json.dumps(kept, indent=2, ensure_ascii=False) + "\n")
        return len(current) - len(kept)


def _write_atomic(path: Path, text: str) -> None:
    mode = 0o644
    with contextlib.suppress(FileNotFoundError):
        mode = path.stat().st_mode & 0o777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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
        _write_atomic(path, json.dumps(current, indent=2, ensure_ascii=False) + "\n")
        return current


def write_new(path: Path, text: str, *, mode: int = 0o644) -> bool:
    """Create ``path`` holding ``text``, complete or not at all; never replace a file. Returns
    False when the file already holds exactly ``text``; raises ClientConfigError when it holds
    anything else (for content that cannot be merged: Python snippets, env lines)."""
    path = path.absolute()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ClientConfigError(f"cannot write to {path.parent}: {exc.strerror}", "choose another --write path") from None
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        try:
            os.link(tmp, path)  # atomic, and fails instead of replacing an existing file
        except FileExistsError:
            with contextlib.suppress(OSError):
                if path.read_text() == text:
                    return False
            raise ClientConfigError(
                f"{path} exists and this format cannot be merged into a file; it was left untouched",
                "choose a new --write path, or delete the file first",
            ) from None
        except OSError as exc:  # e.g. a file system without hard links
            raise ClientConfigError(f"cannot create {path}: {exc.strerror}", "choose another --write path") from None
        return True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def remove_object_entries(path: Path, names: Sequence[str]) -> int:
    """Drop the named entries from an object-keyed file (AgentFabric); returns how many were there."""
    path = path.absolute()
    if not path.exists():
        return 0
    with _locked(path, "--write"):
        current = read_object(path)
        kept = {k: v for k, v in current.items() if k not in names}
        if len(kept) != len(current):
            _write_atomic(path, json.dumps(kept, indent=2, ensure_ascii=False) + "\n")
        return len(current) - len(kept)
