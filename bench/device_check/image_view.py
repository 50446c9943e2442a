"""The CPU run's stand-in for the lent machine's image: a fresh virtual environment that sees, of
this environment's distributions, only those the image holds (``image-packages.txt``).

So a wheel missing from the wheelhouse fails here as it would there (``import flask`` finds
nothing), instead of being found in the project's .venv. What differs from the machine: this
Python's version (the image's is 3.12), and the versions of the image's packages, which are the
ones installed here (torch CPU, this transformers), so an image package too old for modelserve is
caught only there, by the install step's requirement check.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bench.device_check.wheelhouse import image_packages


def _top_levels(dist: importlib.metadata.Distribution) -> set[str]:
    """The names a distribution puts in site-packages (its packages, modules and .dist-info)."""
    tops = set()
    for f in dist.files or ():
        first = f.parts[0]
        if first not in ("..", "__pycache__") and not first.endswith(".pth"):
            tops.add(first)
    return tops


def _closure(carried: set[str]) -> dict[str, importlib.metadata.Distribution]:
    """The image's distributions installed here and what they need here, transitively (a newer
    huggingface-hub here needs a package the image's older one did not), less what is carried."""
    installed = {str(canonicalize_name(d.metadata["Name"] or "")): d for d in importlib.metadata.distributions()}
    todo = [n for n in image_packages() if n in installed and n not in carried]
    seen: dict[str, importlib.metadata.Distribution] = {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen[name] = installed[name]
        for text in installed[name].requires or ():
            req = Requirement(text)
            dep = str(canonicalize_name(req.name))
            if dep in installed and dep not in carried and (req.marker is None or req.marker.evaluate({"extra": ""})):
                todo.append(dep)
    return seen


def build(work: Path, carried: set[str]) -> Path:
    """Create ``work/image`` and return its python. ``carried``: the wheelhouse's distributions,
    which the stand-in must not find here."""
    venv, shadow = work / "image", work / "image-site"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    shadow.mkdir()
    linked = _closure({str(canonicalize_name(n)) for n in carried})
    for dist in linked.values():
        site = Path(str(dist.locate_file("")))
        for top in sorted(_top_levels(dist)):
            link = shadow / top
            if not link.exists() and (site / top).exists():
                link.symlink_to(site / top)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True, timeout=60).stdout.strip()  # fmt: skip
    # A plain path line: the shadow folder joins sys.path, and no .pth file of a linked package runs.
    (Path(purelib) / "image-packages.pth").write_text(f"{shadow}\n")
    extra = sorted(set(linked) - image_packages())
    print(f"image stand-in: {venv}: {len(linked)} distributions from {sys.prefix} (the image's, and what they "
          f"need here: {', '.join(extra) or 'nothing else'})")
    return python
