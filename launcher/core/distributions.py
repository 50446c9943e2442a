"""Which Python distributions an interpreter has, found without importing them."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import subprocess
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Availability:
    ok: bool
    version: str | None = None
    reason: str = ""


def has_distribution(name: str) -> bool:
    try:
        importlib.metadata.version(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return importlib.util.find_spec(name.replace("-", "_")) is not None


def version_of(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def local_distributions(names: tuple[str, ...]) -> Availability:
    """This interpreter's answer for ``names`` (the first one's version is reported)."""
    missing = [d for d in names if not has_distribution(d)]
    if missing:
        return Availability(False, None, f"not installed here: {', '.join(missing)}")
    return Availability(True, version_of(names[0]) if names else None)


_PROBE = (
    "import importlib.metadata as m, json, sys\n"
    "out = {}\n"
    "for n in sys.argv[1:]:\n"
    "    try: out[n] = m.version(n)\n"
    "    except m.PackageNotFoundError: out[n] = None\n"
    "print(json.dumps(out))\n"
)


def probe_distributions(python: str, names: tuple[str, ...]) -> Availability:
    """Ask another interpreter which of ``names`` it has, without importing them."""
    try:
        proc = subprocess.run([python, "-c", _PROBE, *names], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Availability(False, None, f"cannot run {python}: {exc}")
    if proc.returncode != 0:
        return Availability(False, None, f"{python} failed: {proc.stderr.strip()[-200:]}")
    found: dict[str, Any] = json.loads(proc.stdout)
    missing = [n for n, v in found.items() if v is None]
    if missing:
        return Availability(False, None, f"not installed in {python}: {', '.join(missing)}")
    return Availability(True, found[names[0]] if names else None)
