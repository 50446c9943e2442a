"""Packaged data files: ``configs/`` and ``systemd/``.

In a wheel they are the ``launcher.configs`` / ``launcher.systemd`` subpackages (see
pyproject.toml); in a plain checkout they are the top-level folders beside ``launcher/``.
"""

from __future__ import annotations

from importlib import resources as _res
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent


def _dir(package: str, folder: str) -> Path:
    try:
        path = Path(str(_res.files(package)))
        if path.is_dir():
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    return _CHECKOUT / folder


def configs_dir() -> Path:
    return _dir("launcher.configs", "configs")


def systemd_dir() -> Path:
    return _dir("launcher.systemd", "systemd")


def config_path(name: str) -> Path:
    return configs_dir() / name
