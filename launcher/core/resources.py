"""Packaged data files: ``configs/`` and ``systemd/``.

In a wheel they are the ``launcher.configs`` / ``launcher.systemd_units`` subpackages (see
pyproject.toml); in a plain checkout they are the top-level folders beside ``launcher/``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[2]


def _dir(package: str, folder: str) -> Path:
    # These are namespace packages (data only, no __init__.py): importlib.resources hands back
    # a MultiplexedPath there, so ask the import system for the folder instead.
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:
        spec = None
    for location in (spec.submodule_search_locations or []) if spec else []:
        if Path(location).is_dir():
            return Path(location)
    return _CHECKOUT / folder


def configs_dir() -> Path:
    return _dir("launcher.configs", "configs")


def systemd_dir() -> Path:
    return _dir("launcher.systemd_units", "systemd")


def config_path(name: str) -> Path:
    return configs_dir() / name
