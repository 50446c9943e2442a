"""Start and stop the processes of one deployment, each in a process group of its own.

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

A child inherits the environment of the command that starts it, minus systemd's notify
variables and minus modelserve's own settings (``MODELSERVE_*``): our servers read those (the API
key among them), so they reach a child only through its plan. Where state and cache live is
passed on, since the gateway's `modelserve up` of a member must see the same ones.

Process creation, the process table, the clock and sleeping are constructor arguments, so tests
drive start and stop with scripted processes and a fake clock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from launcher.core.errors import StartupFailed
from launcher.core.launch import ProcessSpec
from launcher.process.notify import child_environment
from launcher.process.table import ProcessTable, SystemProcesses
from launcher.store.records import MARKER_ENV, ProcessRecord

PASSED_ON = ("MODELSERVE_HOME", "MODELSERVE_CACHE")


def inherited_environment(env: Mapping[str, str]) -> dict[str, str]:
    """What a child gets of ``env`` before its plan's own variables are added."""
    return {k: v for k, v in child_environment(env).items() if not k.startswith("MODELSERVE_") or k in PASSED_ON}


class PopenLike(Protocol):
    pid: int

    def poll(self) -> int | None: ...


Spawner = Callable[..., PopenLike]


@dataclass
class Started:
    """A process this supervisor started (satisfies readiness.Watched)."""

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


class ProcessGroups:
    def __init__(
        self,
        *,
        spawn: Spawner = subprocess.Popen,
        table: ProcessTable | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._spawn = spawn
        self.table: ProcessTable = table or SystemProcesses()
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
        # systemd's NOTIFY_SOCKET/WATCHDOG_* are for `modelserve run`, never for the engines; a
        # MODELSERVE_API_KEY exported in the user's shell must not make the server demand a key.
        env = inherited_environment(os.environ if base_env is None else base_env)
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
            raise StartupFailed(
                f"cannot start the {spec.role} process ({spec.argv[0]}): {exc.strerror or exc}",
                "check the interpreter (`python:`) or executable and its permissions",
            ) from exc
        finally:
            log.close()  # the child holds its own copy of the descriptor
        pgid = proc.pid  # a new session leader is its own group leader
        return Started(spec.role, proc, pgid, self.table.create_time(proc.pid), list(spec.argv), log_path)

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
        table = self.table
        initial = table.members(processes, marker)
        if not initial:
            report.already_gone = True
            return report
        for rec in reversed(processes):
            if table.verified(rec):
                table.send(rec.pid, signal.SIGTERM)
        for pgid in self._groups(processes, initial):
            table.send_group(pgid, signal.SIGTERM)
        for pid in initial:
            table.send(pid, signal.SIGTERM)

        remaining = self._wait_gone(processes, marker, t0 + timeout, interrupt)
        report.terminated = [pid for pid in initial if pid not in remaining]
        if remaining:
            for pgid in self._groups(processes, remaining):
                table.send_group(pgid, signal.SIGKILL)
            for pid in remaining:
                table.send(pid, signal.SIGKILL)
            report.killed = list(remaining)
            report.survivors = self._wait_gone(processes, marker, self._clock() + kill_timeout)
        report.seconds = self._clock() - t0
        return report

    def _groups(self, processes: Sequence[ProcessRecord], members: Sequence[int]) -> set[int]:
        """Groups safe to signal as a whole: recorded groups that hold at least one verified member."""
        member_groups = {g for pid in members if (g := self.table.group_of(pid)) is not None}
        return {rec.pgid for rec in processes} & member_groups

    def _wait_gone(
        self,
        processes: Sequence[ProcessRecord],
        marker: str,
        deadline: float,
        interrupt: Callable[[], bool] | None = None,
    ) -> list[int]:
        while True:
            self.table.reap([rec.pid for rec in processes])
            alive = self.table.members(processes, marker)
            if not alive or self._clock() >= deadline or (interrupt is not None and interrupt()):
                return alive
            self._sleep(0.1)
