"""The ``ollama`` executable: finding it, its version, and the environment ``ollama serve`` reads."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_BINARY = "ollama"
VERSION_RE = re.compile(r"version is (\S+)")


def find_binary(configured: str | None) -> str | None:
    """``ollama_bin`` (a path, or a name looked up on PATH), else ``ollama`` on PATH."""
    wanted = configured or DEFAULT_BINARY
    if os.sep in wanted:
        path = Path(wanted).expanduser()
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(wanted)


def binary_version(binary: str) -> str | None:
    """``ollama --version`` says "ollama version is X", or, with no server running, "Warning:
    client version is X"; both name the version after "version is"."""
    if binary in _VERSIONS:
        return _VERSIONS[binary]
    _VERSIONS[binary] = _run_version(binary)
    return _VERSIONS[binary]


_VERSIONS: dict[str, str | None] = {}  # binary -> version: available() and inspect() both ask


def _run_version(binary: str) -> str | None:
    try:
        proc = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = VERSION_RE.search(proc.stdout + "\n" + proc.stderr)
    return match.group(1) if match else None


def host_port(host: str, port: int) -> str:
    """OLLAMA_HOST for a bind address (IPv6 in brackets, as Go's net.JoinHostPort writes it)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def server_env(backend_args: Mapping[str, Any]) -> dict[str, str]:
    """`ollama serve` takes no flags: its settings are OLLAMA_* variables. ``backend_args`` may
    spell them as Ollama does (OLLAMA_KEEP_ALIVE) or short (keep_alive, num_parallel)."""
    out: dict[str, str] = {}
    for key, value in backend_args.items():
        name = key.lstrip("-").replace("-", "_").upper()
        name = name if name.startswith("OLLAMA_") else "OLLAMA_" + name
        if value is None:
            continue
        out[name] = ("1" if value else "0") if isinstance(value, bool) else str(value)
    return out
