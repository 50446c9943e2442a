"""Finding a deployment's processes from the outside, the way the tests check "nothing left"."""

from __future__ import annotations

import os

import psutil

from launcher.store.records import MARKER_ENV


def with_marker(marker: str) -> list[psutil.Process]:
    """Live processes whose environment carries the deployment's marker (zombies are dead)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get(MARKER_ENV) == marker and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def of_deployment(marker: str, pgid: int) -> list[psutil.Process]:
    """The marker, or the process group: vLLM retitles its workers with setproctitle, and their
    /proc/PID/environ then reads empty, so the marker alone would miss exactly those."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get(MARKER_ENV) == marker or os.getpgid(proc.pid) == pgid:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def carries_marker(proc: psutil.Process, marker: str) -> bool:
    """False for a process that is gone or became a zombie meanwhile (a race, not an error)."""
    try:
        return proc.environ().get(MARKER_ENV) == marker and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
