"""Device choice: ``--device`` (auto|cpu|cuda|cuda:0,2) and ``--gpus N`` -> a DevicePlan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from launcher.core.errors import DeviceError
from launcher.devices.gpus import Gpu


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
        if not self.gpus:  # GPUs elsewhere (a Ray cluster's): the reason says where
            return self.reason
        names = ", ".join(f"GPU {g.index} ({g.name}, {g.free_gib:.1f} GiB free)" for g in self.gpus)
        return names




def plan(device: str, gpus: list[Gpu], *, count: int | None = None) -> DevicePlan:
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
