"""After the install, in the environment the check runs in (the image's Python, the wheelhouse
first on its path): does everything import, from where, and is every requirement met?

    PYTHONPATH=SITE:ROOT python -P -m bench.device_check.preflight cuda|cpu SITE   (prints JSON)

The image's own packages are whatever versions it holds; this is where one too old for
modelserve (or for a carried wheel) shows, named, instead of as a failure three steps later.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

MODULES = ["launcher.cli", "backends.builtin_server.http.app", "backends.builtin_server.engine.scheduler", "flask",
           "pydantic", "llguidance", "torch", "transformers", "tokenizers", "safetensors", "psutil", "aiohttp", "yaml",
           "click", "prometheus_client"]  # fmt: skip


def _unmet(requirements: list[str], extras: set[str], who: str) -> list[str]:
    out = []
    for text in requirements:
        req = Requirement(text)
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in extras | {""}):
            continue
        try:
            have = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{req.name} is missing ({who} requires {req})")
            continue
        try:
            ok = req.specifier.contains(Version(have), prereleases=True)
        except InvalidVersion:
            ok = False
        if not ok:
            out.append(f"{req.name} {have} does not satisfy {who}'s {req}")
    return out


def main(device: str, site: Path) -> dict[str, object]:
    imports = {}
    for name in MODULES + (["pynvml"] if device == "cuda" else []):
        try:
            importlib.import_module(name)
            imports[name] = "ok"
        except Exception as exc:  # an import that fails is the finding, whatever it raises
            imports[name] = f"{type(exc).__name__}: {exc}"
    unmet = _unmet(importlib.metadata.requires("modelserve") or [], {"hf", "gpu"} if device == "cuda" else {"hf"},
                   "modelserve")  # fmt: skip
    for dist in importlib.metadata.distributions(path=[str(site)]):
        unmet += _unmet(dist.requires or [], set(), canonicalize_name(dist.metadata["Name"] or "?"))
    launcher = sys.modules.get("launcher")
    import torch

    return {
        "python": sys.version.split()[0],
        "imports": imports,
        "unmet": sorted(set(unmet)),
        "launcher_from": str(Path(launcher.__file__ or "").parent) if launcher else None,
        "versions": {n: importlib.metadata.version(n) for n in ("torch", "transformers", "tokenizers", "safetensors")},
        "cuda": {"available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda,
                 "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]},  # fmt: skip
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], Path(sys.argv[2]))))
