"""Where modelserve keeps things on disk.

``MODELSERVE_HOME`` holds deployment state and logs (tests point it at a temp dir).
``MODELSERVE_CACHE`` holds what is expensive to rebuild: converted models, downloads, managed
backend environments. Both follow XDG when unset.
"""

from __future__ import annotations

import os
from pathlib import Path


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
