"""Start and stop the processes of one deployment.

Every process of a deployment starts in a session (and process group) of its own. One group for
all of FastChat's three processes is impossible: a process may only join a group in its own
session, so setpgid() into the first process's new session fails with EPERM. Stopping sends
SIGTERM to the processes in reverse start order and then to every recorded group, waits a
bounded time, then SIGKILLs the groups. The groups catch what killing one pid misses: vLLM's
EngineCore and Worker outlive a SIGKILLed API process (shared/reference/vllm-cpu.md).

Every process also carries ``MODELSERVE_DEPLOYMENT_ID=<marker>`` in its environment. Before a
group is signalled, one of its members must carry the marker (or be the recorded pid with the
recorded start time), so a recycled pgid is never hit; processes that left the group but kept
the marker are found and stopped too.

Process creation, the clock and sleeping are constructor arguments so tests can script events.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

import psutil

from backends.base import ProcessSpec
from launcher.notify import child_environment
from launcher.state import MARKER_ENV, ProcessRecord


class PopenLike(Protocol):
    pid: int

    def poll(self) -> int | None: ...


Spawner = Callable[..., PopenLike]


@dataclass
class Started:
    """A process this supervisor started (satisfies health.Watched)."""

    role: str
    process: PopenLike
    pgid: int
    create_time: float
    argv: list[str]
    log_path: Path

    def poll(self) -> int | None:
        return self.process.poll()

    def record(self) -> ProcessRecord:
        return ProcessRecord(self.role, self.process.pid, self.pgid, self.create_time, self.argv, str(self.log_path))


@dataclass
class StopReport:
    terminated: list[int] = field(default_factory=list)  # exited after SIGTERM
    killed: list[int] = field(default_factory=list)  # needed SIGKILL
    already_gone: bool = False
    seconds: float = 0.0
    survivors: list[int] = field(default_factory=list)  # still there after SIGKILL (should be empty)


class Supervisor:
    def __init__(
        self,
        *,
        spawn: Spawner = subprocess.Popen,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._spawn = spawn
        self._clock = clock
        self._sleep = sleep

    def start(
        self,
        spec: ProcessSpec,
        *,
        log_dir: Path,
        marker: str,
        base_env: Mapping[str, str] | None = None,
    ) -> Started:
        """Start ``spec`` detached: its own session, stdin closed, output to a log file."""
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{spec.role}.log"
        # systemd's NOTIFY_SOCKET/WATCHDOG_* are for `modelserve run`, never for the engines.
        env = child_environment(os.environ if base_env is None else base_env)
        env.update(spec.env)
        env[MARKER_ENV] = marker
        log: IO[bytes] = log_path.open("ab")
        try:
            proc = self._spawn(
                list(spec.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                # Not the user's cwd: `python -m` puts it first on sys.path, where a folder
                # named like one of our packages would shadow it.
                cwd=spec.cwd or str(log_dir.parent),
                close_fds=True,
                start_new_session=True,
            )
        except OSError as exc:
            from launcher.errors import StartupFailed

            raise StartupFailed(
                f"cannot start the {spec.role} process ({spec.argv[0]}): {exc.strerror or exc}",
                "check the interpreter (`python:`) or executable and its permissions",
            ) from exc
        finally:
            log.close()  # the child holds its own copy of the descriptor
        pgid = proc.pid  # a new session leader is its own group leader
        return Started(spec.role, proc, pgid, _create_time(proc.pid), list(spec.argv), log_path)

    # ---- stopping ------------------------------------------------------------------------

    def stop(
        self,
        processes: Sequence[ProcessRecord],
        *,
        marker: str,
        timeout: float = 10.0,
        kill_timeout: float = 5.0,
        interrupt: Callable[[], bool] | None = None,
    ) -> StopReport:
        """SIGTERM (reverse start order, then the group), bounded wait, SIGKILL. Gone is success.

        ``interrupt()`` turning true (a second Ctrl-C) cuts the wait short: SIGKILL at once.
        """
        t0 = self._clock()
        report = StopReport()
        initial = self._members(processes, marker)
        if not initial:
            report.already_gone = True
            return report

        for rec in reversed(processes):
            proc = _verified(rec)
            if proc is not None:
                _signal_pid(proc.pid, signal.SIGTERM)
        for pgid in _groups(processes, marker, initial):
            _signal_group(pgid, signal.SIGTERM)
        for proc in initial:
            _signal_pid(proc.pid, signal.SIGTERM)

        deadline = t0 + timeout
        remaining = self._wait_gone(processes, marker, deadline, interrupt)
        report.terminated = [p.pid for p in initial if p.pid not in {r.pid for r in remaining}]
        if remaining:
            for pgid in _groups(processes, marker, remaining):
                _signal_group(pgid, signal.SIGKILL)
            for proc in remaining:
                _signal_pid(proc.pid, signal.SIGKILL)
            report.killed = [p.pid for p in remaining]
            report.survivors = [p.pid for p in self._wait_gone(processes, marker, self._clock() + kill_timeout)]
        report.seconds = self._clock() - t0
        return report

    def _members(self, processes: Sequence[ProcessRecord], marker: str) -> list[psutil.Process]:
        return find_members(processes, marker)

    def _wait_gone(
        self,
        processes: Sequence[ProcessRecord],
        marker: str,
        deadline: float,
        interrupt: Callable[[], bool] | None = None,
    ) -> list[psutil.Process]:
        while True:
            _reap(rec.pid for rec in processes)
            alive = self._members(processes, marker)
            if not alive or self._clock() >= deadline or (interrupt is not None and interrupt()):
                return alive
            self._sleep(0.1)


# ---- process identity -----------------------------------------------------------------------


def _create_time(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return 0.0


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _verified(rec: ProcessRecord) -> psutil.Process | None:
    """The recorded process, if that pid still is the process we started (not a recycled pid)."""
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


def _started_after(proc: psutil.Process, since: float) -> bool:
    try:
        return proc.create_time() >= since
    except psutil.Error:
        return False


def _groups(
    processes: Sequence[ProcessRecord], marker: str, members: Iterable[psutil.Process]
) -> set[int]:
    """Groups safe to signal as a whole: recorded groups that hold at least one verified member."""
    member_groups = set()
    for proc in members:
        with contextlib.suppress(OSError):
            member_groups.add(os.getpgid(proc.pid))
    return {rec.pgid for rec in processes} & member_groups


def _signal_pid(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except OSError as exc:
        if exc.errno not in (errno.ESRCH, errno.EPERM):
            raise


def _reap(pids: Iterable[int]) -> None:
    """Collect the exit status of those of ``pids`` that are our own exited children, so they
    stop showing up as zombies. Only these pids: waitpid(-1) would steal statuses that other
    code in this process (a Popen object) is waiting for."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def pid_alive(rec: ProcessRecord) -> bool:
    return _verified(rec) is not None
