"""A resolved model reference: what ``-m`` named, and where it was found."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ModelKind = Literal["alias", "local", "hf-cache", "modelscope-cache", "remote"]


@dataclass(frozen=True)
class ResolvedModel:
    reference: str  # as the user wrote it
    kind: ModelKind
    path: str | None  # the local folder or file; None when the engine fetches it
    served_name: str  # the default name the server answers to
    description: str  # for the summary: where it was found

    @property
    def engine_ref(self) -> str:
        """What to hand the engine: the local path when there is one, else the ID."""
        return self.path or self.reference
