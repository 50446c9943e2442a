"""Devices: GPUs (NVML, then nvidia-smi), the host, placement, and "will it fit" with numbers.

The names below are the package's interface; the modules are ``gpus`` (discovery),
``placement`` (--device/--gpus -> DevicePlan), ``memory_fit`` (estimates and fit) and ``host``;
``ray_inventory`` reads a live Ray cluster's nodes (imported by name: it is not needed elsewhere).
"""

from __future__ import annotations

from launcher.devices.gpus import (
    NVIDIA_SMI_QUERY,
    Gpu,
    apply_visible_devices,
    discover,
    parse_nvidia_smi_csv,
    query_nvidia_smi,
    query_nvml,
)
from launcher.devices.host import cpu_count, memory_available
from launcher.devices.memory_fit import (
    DTYPE_BYTES,
    FitVerdict,
    MemoryEstimate,
    check_fit,
    check_host_fit,
    checkpoint_dtype,
    estimate_memory,
    serving_dtype,
    tensor_parallel_problem,
)
from launcher.devices.placement import DevicePlan, plan

__all__ = [
    "DTYPE_BYTES", "NVIDIA_SMI_QUERY", "DevicePlan", "FitVerdict", "Gpu", "MemoryEstimate", "apply_visible_devices",
    "check_fit", "check_host_fit", "checkpoint_dtype", "cpu_count", "discover", "estimate_memory", "memory_available",
    "parse_nvidia_smi_csv", "plan", "query_nvidia_smi", "query_nvml", "serving_dtype", "tensor_parallel_problem",
]  # fmt: skip
