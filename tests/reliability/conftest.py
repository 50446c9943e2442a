"""The reliability tests run real built-in servers on the tiny model: the server tests' fixtures."""

from __future__ import annotations

from tests.server.conftest import start_server, tiny_model_dir

__all__ = ["start_server", "tiny_model_dir"]
