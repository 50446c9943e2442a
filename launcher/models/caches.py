"""Where Hugging Face and ModelScope keep downloaded models, and finding one there offline."""

from __future__ import annotations

import os
from pathlib import Path


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    hf_home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(hf_home).expanduser() / "hub"


def find_in_hf_cache(model_id: str) -> Path | None:
    """huggingface_hub's layout: models--ORG--NAME/refs/main names the snapshot to use."""
    repo = hf_cache_dir() / ("models--" + model_id.replace("/", "--"))
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo / "refs" / "main"
    if ref.is_file():
        candidate = snapshots / ref.read_text().strip()
        if (candidate / "config.json").exists():
            return candidate
    complete = [s for s in snapshots.iterdir() if (s / "config.json").exists()]
    return max(complete, key=lambda s: s.stat().st_mtime) if complete else None


# The revisions modelscope_hub picks when none is asked for, in its order.
MODELSCOPE_REVISIONS = ("master", "main")


def modelscope_cache_dir() -> Path:
    """modelscope 1.40.2's cache root: $MODELSCOPE_CACHE, else ~/.cache/modelscope (whose hub/
    subfolder holds what SDKs before 1.38 downloaded)."""
    env = os.environ.get("MODELSCOPE_CACHE")
    return Path(env).expanduser() if env else Path(os.path.expanduser("~")) / ".cache" / "modelscope"


def find_in_modelscope_cache(model_id: str) -> Path | None:
    """The folder modelscope itself would load ``ORG/NAME`` from offline, or None.

    Same order as modelscope_hub (``_find_legacy_repo_dir`` / ``_repo_cache_dir_path``): the
    legacy ``models/ORG/NAME`` folders ('.' in NAME written as '___'), also under ``hub/``, then
    the snapshots of ``models/ORG--NAME``. A candidate counts only with a config.json in it.
    """
    if "/" not in model_id:
        return None
    org, name = model_id.split("/", 1)
    safe = name.replace(".", "___")
    root = modelscope_cache_dir()
    for folder in (root / "models" / org / safe, root / "hub" / "models" / org / safe, root / "models" / org / name,
                   root / org / name):  # fmt: skip
        if (folder / "config.json").is_file():
            return folder
    snapshots = root / "models" / f"{org}--{name}" / "snapshots"
    for revision in MODELSCOPE_REVISIONS:
        if (snapshots / revision / "config.json").is_file():
            return snapshots / revision
    if snapshots.is_dir():
        complete = [s for s in snapshots.iterdir() if (s / "config.json").is_file()]
        if complete:
            return max(complete, key=lambda s: s.stat().st_mtime)
    return None


