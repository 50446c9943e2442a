"""What a deployment's record and the process table say together: its state, and the memory its
processes hold. `status` and the dashboard both ask here, so they never disagree."""

from __future__ import annotations

import psutil

from launcher.process.table import live_process, pid_alive, runner_alive
from launcher.store.records import DeploymentRecord


def deployment_state(record: DeploymentRecord) -> tuple[str, list[str]]:
    """(state, the roles of its processes that died). State: running | starting | restarting
    (`run` brings it back) | failed (some process died) | exited."""
    alive = [pid_alive(p) for p in record.processes]
    dead = [p.role for p, a in zip(record.processes, alive, strict=True) if not a]
    if record.status == "restarting" and runner_alive(record.supervisor_pid, record.started_at):
        # Between a crash and the next start the runner has stopped the old processes on
        # purpose: "exited" would read as if nobody were bringing it back.
        return "restarting", dead
    running = record.external or (bool(alive) and all(alive))
    if record.status in ("starting", "restarting") and running:
        return record.status, dead
    if running:
        return "running", dead
    return ("failed" if any(alive) else "exited"), dead  # failed: part of it died (FastChat's worker, say)


def resident_bytes(record: DeploymentRecord) -> int | None:
    """Resident memory of the deployment's live processes and their children (an engine's
    workers); None when none of them runs here (a reused server, or all exited)."""
    total, seen = 0, set()
    for rec in record.processes:
        proc = live_process(rec)
        if proc is None:
            continue
        try:
            family = [proc, *proc.children(recursive=True)]
        except psutil.Error:
            family = [proc]
        for member in family:
            if member.pid in seen:
                continue
            seen.add(member.pid)
            try:
                total += member.memory_info().rss
            except psutil.Error:
                continue
    return total if seen else None
