"""GPU discovery.

Discovery asks NVML (``nvidia-ml-py``) first and falls back to ``nvidia-smi --query-gpu ...
--format=csv``; both are parsed by pure functions so tests drive them with recorded output.
``CUDA_VISIBLE_DEVICES`` is honoured the way CUDA does: only the listed GPUs exist, numbered
0..n-1 in the listed order, and ``--device cuda:1`` means the second *visible* GPU.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

NVIDIA_SMI_QUERY = "index,uuid,name,memory.total,memory.used,memory.free,utilization.gpu"


@dataclass(frozen=True)
class Gpu:
    index: int  # physical index (nvidia-smi / NVML numbering)
    uuid: str
    name: str
    memory_total_mib: int
    memory_used_mib: int
    memory_free_mib: int
    utilization_pct: int | None = None

    @property
    def free_gib(self) -> float:
        return self.memory_free_mib / 1024


# ---- discovery ----------------------------------------------------------------------------


def parse_nvidia_smi_csv(text: str) -> list[Gpu]:
    """Parse ``nvidia-smi --query-gpu=NVIDIA_SMI_QUERY --format=csv,noheader,nounits``."""
    gpus = []
    for line in text.strip().splitlines():
        if not line.strip() or line.lstrip().startswith("index"):
            continue  # blank, or the header line of --format=csv
        # With --format=csv (no "nounits") values carry units: "81559 MiB", "37 %".
        parts = [p.strip().removesuffix(" MiB").removesuffix(" %") for p in line.split(",")]
        if len(parts) < 6:
            raise ValueError(f"unexpected nvidia-smi line: {line!r}")
        util = parts[6] if len(parts) > 6 else ""
        gpus.append(
            Gpu(
                index=int(parts[0]),
                uuid=parts[1],
                name=parts[2],
                memory_total_mib=int(float(parts[3])),
                memory_used_mib=int(float(parts[4])),
                memory_free_mib=int(float(parts[5])),
                utilization_pct=int(float(util)) if util and util not in ("[N/A]", "N/A") else None,
            )
        )
    return gpus


def query_nvidia_smi(run: Callable[[Sequence[str]], str] | None = None) -> list[Gpu] | None:
    """None when nvidia-smi is missing or fails (no driver: it exits 9 with "NVIDIA-SMI has failed")."""
    if run is None:
        exe = shutil.which("nvidia-smi")
        if exe is None:
            return None

        def run(argv: Sequence[str]) -> str:
            return subprocess.run(list(argv), capture_output=True, text=True, timeout=20, check=True).stdout

    try:
        out = run(["nvidia-smi", f"--query-gpu={NVIDIA_SMI_QUERY}", "--format=csv,noheader,nounits"])
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvidia_smi_csv(out)


def query_nvml(nvml: Any = None) -> list[Gpu] | None:
    """None when nvidia-ml-py is not installed or NVML cannot initialise (no driver).

    ``nvml``: the pynvml module (tests pass a replay of recorded values).
    """
    if nvml is None:
        import importlib

        try:
            nvml = importlib.import_module("pynvml")
        except ImportError:
            return None
    pynvml = nvml
    try:
        pynvml.nvmlInit()
    except Exception:  # pynvml.NVMLError and OSError: no driver library
        return None
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            name = pynvml.nvmlDeviceGetName(h)
            uuid = pynvml.nvmlDeviceGetUUID(h)
            try:
                util: int | None = int(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
            except Exception:  # not supported on every board (MIG, some vGPUs)
                util = None
            mib = 1024 * 1024
            gpus.append(
                Gpu(
                    index=i,
                    uuid=uuid.decode() if isinstance(uuid, bytes) else str(uuid),
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    memory_total_mib=int(mem.total // mib),
                    memory_used_mib=int(mem.used // mib),
                    memory_free_mib=int(mem.free // mib),
                    utilization_pct=util,
                )
            )
        return gpus
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def apply_visible_devices(gpus: list[Gpu], visible: str | None) -> list[Gpu]:
    """Filter and order physical GPUs the way CUDA_VISIBLE_DEVICES does.

    CUDA stops at the first entry it cannot match; "" or "-1" hides every GPU.
    """
    if visible is None:
        return list(gpus)
    out: list[Gpu] = []
    for token in (t.strip() for t in visible.split(",")):
        if not token:
            break
        match = None
        if token.lstrip("-").isdigit():
            match = next((g for g in gpus if g.index == int(token)), None)
        else:
            match = next((g for g in gpus if g.uuid == token or g.uuid.startswith(token)), None)
        if match is None or match in out:
            break
        out.append(match)
    return out


def discover(
    env: dict[str, str] | None = None,
    *,
    nvml: Any = None,
    smi: Callable[[Sequence[str]], str] | None = None,
) -> list[Gpu]:
    """The GPUs this process may use, in CUDA's logical order (cuda:0 first).

    NVML first; nvidia-smi when NVML is missing or fails. ``nvml``/``smi`` replace the real
    ones in tests (recorded outputs).
    """
    env = dict(os.environ) if env is None else env
    gpus = query_nvml(nvml)
    if gpus is None:
        gpus = query_nvidia_smi(smi)
    return apply_visible_devices(gpus or [], env.get("CUDA_VISIBLE_DEVICES"))
