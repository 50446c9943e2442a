"""The backend registry: name -> "module:Class", imported only when used.

Built-in backends register exactly the way a third-party one does (an entry in the
``modelserve.backends`` entry-point group points at a Backend subclass), so this lookup is
exercised on every run. Importing this package imports no engine and no backend module.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backends.base import Backend

BUILTIN: dict[str, str] = {
    "flask-transformers": "backends.flask_transformers:FlaskTransformersBackend",
    "vllm": "backends.vllm:VLLMBackend",
    "flask-modelscope": "backends.flask_modelscope:FlaskModelScopeBackend",
    "ollama": "backends.ollama:OllamaBackend",
    "fastchat": "backends.fastchat:FastChatBackend",
}

ENTRY_POINT_GROUP = "modelserve.backends"


def registry() -> dict[str, str]:
    """Built-ins plus third-party entry points (which may not shadow a built-in)."""
    found = dict(BUILTIN)
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def names() -> list[str]:
    return list(registry())


def get(name: str) -> Backend:
    from launcher.errors import ConfigError

    target = registry().get(name)
    if target is None:
        raise ConfigError(
            f"unknown backend {name!r}",
            f"use one of: auto, {', '.join(registry())} (`modelserve backends` says which run here)",
        )
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    backend: Backend = cls()
    return backend
