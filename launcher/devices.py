"""GPU discovery and device choice.

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
from typing import Literal

from launcher.errors import DeviceError

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


@dataclass(frozen=True)
class DevicePlan:
    kind: Literal["cpu", "cuda"]
    gpus: tuple[Gpu, ...] = ()
    reason: str = ""

    @property
    def tensor_parallel(self) -> int:
        return max(1, len(self.gpus))

    @property
    def cuda_visible_devices(self) -> str | None:
        """Physical ids for the child's CUDA_VISIBLE_DEVICES (its cuda:0.. are then ours)."""
        if self.kind != "cuda":
            return None
        return ",".join(str(g.index) for g in self.gpus)

    def describe(self) -> str:
        if self.kind == "cpu":
            return "CPU"
        names = ", ".join(f"GPU {g.index} ({g.name}, {g.free_gib:.1f} GiB free)" for g in self.gpus)
        return names


# ---- discovery ----------------------------------------------------------------------------


def parse_nvidia_smi_csv(text: str) -> list[Gpu]:
    """Parse ``nvidia-smi --query-gpu=NVIDIA_SMI_QUERY --format=csv,noheader,nounits``."""
    gpus = []
    for line in text.strip().splitlines():
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split(",")]
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
    """None when nvidia-smi is missing or fails (no driver)."""
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


def query_nvml() -> list[Gpu] | None:
    """None when nvidia-ml-py is not installed or NVML cannot initialise (no driver)."""
    try:
        import pynvml  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
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


def discover(env: dict[str, str] | None = None) -> list[Gpu]:
    """The GPUs this process may use, in CUDA's logical order (cuda:0 first)."""
    env = dict(os.environ) if env is None else env
    gpus = query_nvml()
    if gpus is None:
        gpus = query_nvidia_smi()
    return apply_visible_devices(gpus or [], env.get("CUDA_VISIBLE_DEVICES"))


# ---- choice ---------------------------------------------------------------------------------


def plan(device: str, gpus: list[Gpu], *, count: int | None = None, supports_cpu: bool = True) -> DevicePlan:
    """Turn ``--device`` (auto|cpu|cuda|cuda:0,2) and ``--gpus N`` into a DevicePlan."""
    if device == "cpu":
        return DevicePlan("cpu", (), "--device cpu")
    if device == "auto" and not gpus:
        return DevicePlan("cpu", (), "no GPU found")
    if device.startswith("cuda") and not gpus:
        raise DeviceError(
            f"--device {device} asks for a GPU, but none is visible (no NVIDIA driver, or CUDA_VISIBLE_DEVICES hides them)",
            "use --device cpu, or check `nvidia-smi`",
        )
    if device.startswith("cuda:"):
        wanted = [int(i) for i in device.split(":", 1)[1].split(",")]
        chosen = []
        for i in wanted:
            if i >= len(gpus):
                raise DeviceError(
                    f"--device {device}: cuda:{i} does not exist; visible GPUs are cuda:0..cuda:{len(gpus) - 1}",
                    "pick an index from `modelserve devices`",
                )
            chosen.append(gpus[i])
        return DevicePlan("cuda", tuple(chosen), f"--device {device}")
    n = count or 1
    if n > len(gpus):
        raise DeviceError(f"--gpus {n}: only {len(gpus)} GPU(s) visible", f"use --gpus {len(gpus)} or fewer")
    by_free = sorted(gpus, key=lambda g: (-g.memory_free_mib, g.index))[:n]
    chosen_sorted = tuple(sorted(by_free, key=lambda g: g.index))
    why = "most free memory" if len(gpus) > n else "all visible GPUs"
    return DevicePlan("cuda", chosen_sorted, f"{len(gpus)} GPU(s) found; {n} with {why}")
