"""`down`: stop deployments and leave nothing of them behind."""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from launcher.agents import config_files
from launcher.core.errors import StopFailed
from launcher.process.groups import ProcessGroups, StopReport
from launcher.process.table import find_members
from launcher.store import records


@dataclass
class DownResult:
    name: str
    report: StopReport
    forgot: int = 0
    external: bool = False


def down(
    names: list[str] | None,
    *,
    forget_config: bool = False,
    timeout: float | None = None,
    groups: ProcessGroups | None = None,
) -> list[DownResult]:
    """Stop deployments (all when ``names`` is None). Raises DeploymentNotFound for unknown names."""
    groups = groups or ProcessGroups()
    found = records.list_all() if names is None else [records.load(n) for n in names]
    results = []
    for record in found:
        if record.mode == "foreground" and _stop_runner(record, timeout or record.stop_timeout):
            stop_members(record.name, groups)
            forgot = _forget(record) if forget_config else 0
            results.append(DownResult(record.name, StopReport(), forgot, False))
            continue
        with records.locked(record.name, timeout=30):
            if record.external:
                rep = StopReport(already_gone=True)
            else:
                rep = groups.stop(record.processes, marker=record.marker, timeout=timeout or record.stop_timeout)
            if rep.survivors:
                raise StopFailed(
                    f"{record.name}: pids {rep.survivors} survived SIGKILL",
                    "they may be stuck in the kernel (D state); check `ps -o pid,stat,cmd -p ...`",
                )
            forgot = _forget(record) if forget_config else 0
            records.remove(record.name)
            results.append(DownResult(record.name, rep, forgot, record.external))
        if record.members:  # a fleet: its gateway stops its members, unless it was killed first
            stop_members(record.name, groups)
    return results


def stop_members(fleet: str, groups: ProcessGroups) -> list[str]:
    """Stop and forget every member record of ``fleet`` still on disk."""
    stopped = []
    for rec in records.list_all():
        if rec.fleet == fleet:
            with records.locked(rec.name, timeout=30):
                groups.stop(rec.processes, marker=rec.marker, timeout=rec.stop_timeout)
                records.remove(rec.name)
            stopped.append(rec.name)
    return stopped


def _forget(record: records.DeploymentRecord) -> int:
    """Remove the agent config entries `up` (and `config --write`) merged for this deployment."""
    removed = 0
    for client in record.clients:
        if client.kind == "agentfabric":
            removed += config_files.remove_object_entries(Path(client.path), client.names)
        else:
            removed += config_files.remove_entries(Path(client.path), client.names)
    return removed


def _stop_runner(record: records.DeploymentRecord, timeout: float) -> bool:
    """A `modelserve run` deployment: ask the runner to stop (killing its children would only make
    it restart them). True once the runner has stopped everything; False: do it here instead."""
    pid = record.supervisor_pid
    try:
        runner = psutil.Process(pid) if pid else None
        if runner is None or runner.create_time() > record.started_at + 1:
            return False  # gone, or a recycled pid
        runner.send_signal(signal.SIGTERM)
        if not _ended(runner, timeout + 15):
            return False
    except psutil.NoSuchProcess:
        pass
    return not records.exists(record.name) or not find_members(record.processes, record.marker)


def _ended(proc: psutil.Process, timeout: float) -> bool:
    """Poll until ``proc`` is gone or a zombie (exited, its parent not yet reaping it: a pid that
    lingers would otherwise hold `down` for the whole timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False
