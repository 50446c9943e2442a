"""What a pure renderer returns (systemd units, Kubernetes manifests): a file's name, its text
and its mode. Renderers never write; the CLI does, with the mode given here (0600 for a file
that holds a secret)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class File:
    name: str
    content: str
    mode: int = 0o644
