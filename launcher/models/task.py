"""What a model folder says about its task, and the facts an embedding client needs (its size).

Only files are read, never a model library: the launcher imports no torch or transformers.

- A sentence-transformers folder (``modules.json`` naming a ``Pooling`` module, or ``1_Pooling/``)
  embeds. Its size is the last module's output: a ``Dense`` module's ``out_features``, else the
  pooling's ``word_embedding_dimension`` times the pooling modes it concatenates.
- A sequence-classification head with one label (``*ForSequenceClassification`` in
  ``architectures``, one entry in ``id2label`` or ``num_labels: 1``) is a cross-encoder: rerank.
- Matryoshka training is declared the way vLLM reads it: ``matryoshka_dimensions`` (the sizes
  allowed) or ``is_matryoshka: true`` in ``config.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher.core.names import Task

# Sentence-transformers pooling modes; each enabled one adds a word_embedding_dimension to the output.
POOLING_MODES = ("pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens",
                 "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens",
                 "pooling_mode_lasttoken")  # fmt: skip


DEFAULT_TASK_REASON = "the default: the model declares no other task (set task: embed|rerank otherwise)"


@dataclass(frozen=True)
class DetectedTask:
    task: Task
    reason: str  # what in the folder said so, for `up --dry-run`


@dataclass(frozen=True)
class EmbeddingFacts:
    dimensions: int | None  # the vectors' size (None: the folder does not say)
    matryoshka: tuple[int, ...] | bool  # sizes it was trained for; True: any smaller one; False: none


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _modules(folder: Path) -> list[dict[str, Any]]:
    found = _json(folder / "modules.json")
    return [m for m in found if isinstance(m, dict)] if isinstance(found, list) else []


def _config(folder: Path) -> dict[str, Any]:
    found = _json(folder / "config.json")
    return found if isinstance(found, dict) else {}


def detect_task(path: str | None) -> DetectedTask | None:
    """The task the model folder at ``path`` declares; None when it declares none (or is no folder)."""
    if path is None or not Path(path).is_dir():
        return None
    folder = Path(path)
    pooling = [m for m in _modules(folder) if str(m.get("type", "")).endswith(".Pooling")]
    if pooling or (folder / "1_Pooling").is_dir():
        what = "modules.json names a Pooling module" if pooling else "1_Pooling/"
        return DetectedTask("embed", f"a sentence-transformers folder ({what})")
    config = _config(folder)
    heads = [a for a in config.get("architectures") or [] if str(a).endswith("ForSequenceClassification")]
    labels = config.get("id2label")
    count = len(labels) if isinstance(labels, dict) else config.get("num_labels")
    if heads and count == 1:
        return DetectedTask("rerank", f"a one-label classification head ({heads[0]}): a cross-encoder")
    return None


def declared_task(reference: str, path: str | None) -> DetectedTask | None:
    """The task the model declares: a built-in alias by its definition, else its folder."""
    from launcher.models.aliases import ALIASES

    alias = ALIASES.get(reference)
    if alias is not None:
        return DetectedTask(alias.task, f"the built-in alias {alias.name} is {alias.origin.split(' (')[0]}")
    found = detect_task(path)
    return DetectedTask(found.task, f"detected: {found.reason}") if found else None


def embedding_facts(path: str | None) -> EmbeddingFacts:
    """The size of an embedding model's vectors and its Matryoshka sizes, from its folder."""
    if path is None or not Path(path).is_dir():
        return EmbeddingFacts(None, False)
    folder = Path(path)
    config = _config(folder)
    declared = config.get("matryoshka_dimensions")
    matryoshka: tuple[int, ...] | bool = False
    if isinstance(declared, list) and declared and all(isinstance(d, int) for d in declared):
        matryoshka = tuple(declared)
    elif config.get("is_matryoshka") is True:
        matryoshka = True
    return EmbeddingFacts(_dimensions(folder, config), matryoshka)


def _dimensions(folder: Path, config: dict[str, Any]) -> int | None:
    size = None
    for module in _modules(folder):
        kind = str(module.get("type", ""))
        settings = _json(folder / str(module.get("path", "")) / "config.json")
        if not isinstance(settings, dict):
            continue
        if kind.endswith(".Pooling"):
            width = settings.get("word_embedding_dimension") or settings.get("embedding_dimension")
            modes = sum(1 for mode in POOLING_MODES if settings.get(mode))
            size = width * max(modes, 1) if isinstance(width, int) else size
        elif kind.endswith(".Dense") and isinstance(settings.get("out_features"), int):
            size = settings["out_features"]
    if size is None and isinstance(config.get("hidden_size"), int):
        size = config["hidden_size"]
    return size
