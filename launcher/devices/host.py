"""The host itself: usable CPUs and free memory."""

from __future__ import annotations

import os

import psutil


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def memory_available() -> int:
    """Bytes of RAM available to a new process now (psutil's estimate, page cache included)."""
    return int(psutil.virtual_memory().available)
