"""Where modelserve keeps things on disk.

``MODELSERVE_HOME`` holds deployment state and logs (tests point it at a temp dir).
``MODELSERVE_CACHE`` holds what is expensive to rebuild: converted models, downloads, managed
backend environments. Both follow XDG when unset.
"""

from __future__ import annotations

import os
from pathlib import Path

from launcher.core.errors import ConfigError


def home() -> Path:
    env = os.environ.get("MODELSERVE_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "modelserve"


def cache() -> Path:
    env = os.environ.get("MODELSERVE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "modelserve"


def deployments_dir() -> Path:
    return home() / "deployments"


def deployment_dir(name: str) -> Path:
    return deployments_dir() / name


def models_dir() -> Path:
    return cache() / "models"


def downloads_dir() -> Path:
    return cache() / "downloads"


def envs_dir() -> Path:
    return cache() / "envs"


def config_dirs() -> list[Path]:
    """Where `modelserve run NAME` looks for NAME.yaml: $MODELSERVE_CONFIG_DIR, then the user's
    config folder, then /etc/modelserve (what the modelserve@.service template uses)."""
    dirs = []
    if os.environ.get("MODELSERVE_CONFIG_DIR"):
        dirs.append(Path(os.environ["MODELSERVE_CONFIG_DIR"]).expanduser())
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    dirs += [Path(base) / "modelserve", Path("/etc/modelserve")]
    return dirs


def find_deployment_file(name: str) -> Path:
    for folder in config_dirs():
        for suffix in (".yaml", ".yml"):
            candidate = folder / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
    searched = ", ".join(str(d) for d in config_dirs())
    raise ConfigError(
        f"no deployment file {name}.yaml in {searched}",
        "put one there (see configs/*.yaml), or pass it with -c FILE",
    )
