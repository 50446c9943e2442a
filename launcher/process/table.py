"""Which live processes belong to a deployment, and signalling them: the OS side of
``groups.ProcessGroups``, behind a protocol so tests can script processes instead."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from collections.abc import Iterable, Sequence
from typing import Protocol

import psutil

from launcher.store.records import MARKER_ENV, ProcessRecord


class ProcessTable(Protocol):
    def members(self, processes: Sequence[ProcessRecord], marker: str) -> list[int]:
        """Pids of every live process of the deployment."""
        ...

    def verified(self, rec: ProcessRecord) -> bool:
        """The recorded pid is still the process we started (not a recycled pid) and alive."""
        ...

    def create_time(self, pid: int) -> float: ...

    def group_of(self, pid: int) -> int | None: ...

    def send(self, pid: int, sig: signal.Signals) -> None: ...

    def send_group(self, pgid: int, sig: signal.Signals) -> None: ...

    def reap(self, pids: Iterable[int]) -> None: ...


class SystemProcesses:
    """The real process table (psutil and os)."""

    def members(self, processes: Sequence[ProcessRecord], marker: str) -> list[int]:
        return [p.pid for p in find_members(processes, marker)]

    def verified(self, rec: ProcessRecord) -> bool:
        return _verified(rec) is not None

    def create_time(self, pid: int) -> float:
        try:
            return psutil.Process(pid).create_time()
        except psutil.Error:
            return 0.0

    def group_of(self, pid: int) -> int | None:
        try:
            return os.getpgid(pid)
        except OSError:
            return None

    def send(self, pid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)

    def send_group(self, pgid: int, sig: signal.Signals) -> None:
        try:
            os.killpg(pgid, sig)
        except OSError as exc:
            if exc.errno not in (errno.ESRCH, errno.EPERM):
                raise

    def reap(self, pids: Iterable[int]) -> None:
        """Collect the exit status of those of ``pids`` that are our own exited children, so they
        stop showing up as zombies. Only these pids: waitpid(-1) would steal statuses that other
        code in this process (a Popen object) is waiting for."""
        for pid in pids:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _verified(rec: ProcessRecord) -> psutil.Process | None:
    try:
        proc = psutil.Process(rec.pid)
        if abs(proc.create_time() - rec.create_time) > 1.0:
            return None
    except psutil.Error:
        return None
    return proc if _alive(proc) else None


def _has_marker(proc: psutil.Process, marker: str) -> bool:
    try:
        return proc.environ().get(MARKER_ENV) == marker
    except psutil.Error:
        return False


def _started_after(proc: psutil.Process, since: float) -> bool:
    try:
        return proc.create_time() >= since
    except psutil.Error:
        return False


def find_members(processes: Sequence[ProcessRecord], marker: str) -> list[psutil.Process]:
    """Every live process of the deployment:

    - the recorded processes (pid + start time, so a recycled pid is not taken for ours);
    - anything carrying the deployment's marker in its environment;
    - any process in a recorded process group *and* in the session our first process created,
      started no earlier than it. This does not rely on the environment: vLLM and others retitle
      their workers with setproctitle, which overwrites what /proc/PID/environ shows (it reads
      empty for VLLM::EngineCore), and those workers are what survives a killed API server.
      A recycled pgid would also need a process that made a new session with that very id.
    """
    found: dict[int, psutil.Process] = {}
    for rec in processes:
        proc = _verified(rec)
        if proc is not None:
            found[proc.pid] = proc
    groups = {rec.pgid for rec in processes}
    since = min((rec.create_time for rec in processes), default=0.0) - 1.0
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid in found or proc.pid == me:
            continue
        try:
            pgid, sid = os.getpgid(proc.pid), os.getsid(proc.pid)
        except OSError:
            continue
        ours = pgid in groups and sid in groups and _started_after(proc, since)
        if (ours or _has_marker(proc, marker)) and _alive(proc):
            found[proc.pid] = proc
    return list(found.values())


def pid_alive(rec: ProcessRecord) -> bool:
    return _verified(rec) is not None


def runner_alive(pid: int | None, started_at: float) -> bool:
    """The `modelserve run` process ``pid`` still runs. It started before its deployment's
    record (``started_at``, epoch seconds); a later start time means the pid was recycled."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        return proc.create_time() <= started_at + 1.0 and _alive(proc)
    except psutil.Error:
        return False


def live_process(rec: ProcessRecord) -> psutil.Process | None:
    """The recorded process when it is still the one we started and alive, else None."""
    return _verified(rec)
