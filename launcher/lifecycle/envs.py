"""Managed Python environments for engines whose pins conflict with each other (vLLM, FastChat).

``modelserve env create vllm`` builds a virtualenv under ``$MODELSERVE_CACHE/envs/vllm`` from a
pinned requirements file in ``configs/envs/``, applies the repairs that engine needs on this
kind of host, and records what it did in ``modelserve-env.json``. ``up`` runs an engine in its
managed environment when the launcher's own interpreter lacks it. The launcher itself never
imports an engine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import backends
from backends.base import EnvSpec
from launcher.core import resources
from launcher.core.distributions import probe_distributions
from launcher.core.errors import EnvError
from launcher.devices import discover
from launcher.process.childio import run_streaming
from launcher.store import paths, records
from launcher.store.files import LockTimeout, locked, write_atomic

Progress = Callable[[str], None]
Variant = Literal["cpu", "cuda"]
MANIFEST = "modelserve-env.json"
INSTALL_DEADLINE = 3600.0  # seconds; a vLLM CUDA install downloads several GB


def specs() -> dict[str, EnvSpec]:
    """The managed environments the registered backends declare, by name."""
    found: dict[str, EnvSpec] = {}
    for name in backends.names():
        try:
            spec = backends.get(name).env_spec
        except Exception:  # a broken plugin must not hide the others' environments
            continue
        if spec is not None:
            found.setdefault(spec.name, spec)
    return found


@dataclass
class EnvInfo:
    name: str
    path: str
    python: str
    variant: str
    requirements: list[str]
    removed: list[str]
    engine: dict[str, str | None]
    created_at: float
    seconds: float


def env_dir(name: str) -> Path:
    return paths.envs_dir() / name


def python_of(name: str) -> Path:
    return env_dir(name) / "bin" / "python"


def ready_python(name: str) -> str | None:
    """The interpreter of a completely built managed environment, else None."""
    return str(python_of(name)) if load(name) is not None else None


def _spec(name: str) -> EnvSpec:
    known = specs()
    if name not in known:
        raise EnvError(f"no managed environment called {name!r}", f"choose one of: {', '.join(known)}")
    return known[name]


def requirements_file(name: str, variant: Variant) -> Path:
    return resources.configs_dir() / "envs" / _spec(name).requirements[variant]


def read_requirements(path: Path) -> list[str]:
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line]


def default_variant() -> Variant:
    return "cuda" if discover() else "cpu"


def load(name: str) -> EnvInfo | None:
    manifest = env_dir(name) / MANIFEST
    if not manifest.exists():
        return None
    return EnvInfo(**json.loads(manifest.read_text()))


def list_envs() -> list[EnvInfo]:
    return [info for name in specs() if (info := load(name)) is not None]


def create(
    name: str,
    *,
    variant: Variant | None = None,
    recreate: bool = False,
    progress: Progress = lambda m: None,
    python: str = sys.executable,
    run: Callable[..., subprocess.CompletedProcess[str]] | None = None,
) -> EnvInfo:
    """Build (or rebuild) the managed environment ``name``. Idempotent when it already exists."""
    spec = _spec(name)
    variant = variant or default_variant()
    existing = load(name)
    if existing is not None and not recreate:
        if existing.variant != variant:
            raise EnvError(
                f"environment {name} exists for {existing.variant}, not {variant}",
                f"`modelserve env create {name} --recreate --variant {variant}`",
            )
        progress(f"environment {name} already exists ({existing.path}); --recreate rebuilds it")
        return existing
    reqs_path = requirements_file(name, variant)
    requirements = read_requirements(reqs_path)
    target = env_dir(name)
    paths.envs_dir().mkdir(parents=True, exist_ok=True)
    try:
        with locked(target.with_name(target.name + ".lock"), timeout=INSTALL_DEADLINE):
            return _build(spec, variant, reqs_path, requirements, progress, python, run)
    except LockTimeout:
        raise EnvError(f"another process has been building {name} for {INSTALL_DEADLINE:.0f} s",
                       f"wait for it, or check for a hung pip (lock: {target}.lock)") from None


def _build(spec: EnvSpec, variant: Variant, reqs_path: Path, requirements: list[str], progress: Progress,
           python: str, run: Callable[..., subprocess.CompletedProcess[str]] | None) -> EnvInfo:  # fmt: skip
    name, target = spec.name, env_dir(spec.name)
    t0 = time.monotonic()
    progress(f"creating {name} environment ({variant}) in {target}")
    # Built in place (a venv hard-codes its path into its scripts). The manifest is written
    # last: an environment without one is half-built and never used by `up`.
    shutil.rmtree(target, ignore_errors=True)
    _check(subprocess.run([python, "-m", "venv", str(target)], capture_output=True, text=True), "python -m venv")
    env_python = str(python_of(name))
    try:
        progress(f"installing {' '.join(requirements)} (from {reqs_path.name}; this takes minutes)")
        _pip(env_python, ["install", "--progress-bar", "off", "-r", str(reqs_path)], progress, run)
        removed = list(spec.remove.get(variant, ()))
        if removed:
            progress(f"removing {', '.join(removed)}: {spec.why_remove}")
            _pip(env_python, ["uninstall", "-y", *removed], progress, run)
        engine = _versions(env_python, spec.engine)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # never leave a half-built env that `up` would pick
        raise
    info = EnvInfo(name, str(target), env_python, variant, requirements, removed, engine, time.time(),
                   round(time.monotonic() - t0, 1))  # fmt: skip
    write_atomic(target / MANIFEST, json.dumps(asdict(info), indent=2) + "\n")
    progress(f"environment {name} ready in {info.seconds:.0f} s: {env_python}")
    return info


def remove(name: str) -> bool:
    """Delete the managed environment; refuse while a deployment runs from it."""
    target = env_dir(_spec(name).name)
    users = [r.name for r in records.list_all() if any(str(target) in " ".join(p.argv) for p in r.processes)]
    if users:
        raise EnvError(
            f"environment {name} is in use by {', '.join(users)}", f"`modelserve down {' '.join(users)}` first"
        )
    if not target.exists():
        return False
    shutil.rmtree(target)
    return True


def _check(proc: subprocess.CompletedProcess[str], what: str) -> None:
    if proc.returncode != 0:
        raise EnvError(f"{what} failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}", "see the error above")


def _pip(
    python: str,
    args: Sequence[str],
    progress: Progress,
    run: Callable[..., subprocess.CompletedProcess[str]] | None,
) -> None:
    cmd = [python, "-m", "pip", "--disable-pip-version-check", *args]
    if run is not None:
        _check(run(cmd), "pip " + args[0])
        return
    # Enough to see it move; pip's full output is in the error when it fails.
    shown = ("Collecting", "Installing collected", "Successfully", "Found existing", "ERROR")
    result = run_streaming(cmd, timeout=INSTALL_DEADLINE, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                           show=lambda line: line.startswith(shown), progress=lambda line: progress("  " + line[:160]))
    if result.timed_out:
        raise EnvError(f"pip {args[0]} took longer than {INSTALL_DEADLINE:.0f} s", "check the network / index")
    if result.returncode != 0:
        raise EnvError(f"pip {args[0]} failed (exit {result.returncode}):\n{result.tail_text()}",
                       "see pip's output above")


def _versions(python: str, dists: Sequence[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for dist in dists:
        avail = probe_distributions(python, (dist,))
        out[dist] = avail.version if avail.ok else None
    return out
