"""Starting and stopping members with the same commands a user runs: ``modelserve up`` (with a
free loopback port and ``--json``) and ``modelserve down``. Whatever ``up`` guarantees - probes
that are real requests, a failed start leaving nothing behind, a record ``status`` reads - holds
for a member, and the gateway needs no backend to do it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from typing import Any

import psutil

from launcher.core.errors import DeviceError
from launcher.gateway.plan import MemberPlan
from launcher.gateway.pool import StartError, Upstream
from launcher.process.groups import inherited_environment
from launcher.process.ports import free_port
from launcher.store import records

STOP_GRACE = 15.0  # seconds an interrupted `up` gets to stop what it started


def member_env() -> dict[str, str]:
    # Not the gateway's own marker (members are not its processes), nor any other MODELSERVE_*
    # setting: a member's `up` takes its key from its own file, never from an ambient variable.
    env = inherited_environment(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class CommandStarter:
    async def start(self, plan: MemberPlan, *, timeout: float) -> Upstream:
        if plan.external_url:
            return Upstream(plan.external_url.rstrip("/"), plan.external_model or plan.model_id)
        port = plan.port or free_port()
        argv = [*plan.start_argv, "--port", str(port), "--timeout", f"{timeout:g}", "--json"]
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE, env=member_env())  # fmt: skip
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout + STOP_GRACE)
        except (asyncio.CancelledError, TimeoutError):
            await _interrupt(proc)  # `up` stops what it started when interrupted
            raise
        if proc.returncode != 0:
            text = err.decode(errors="replace").strip()
            raise StartError(_last_lines(text) or f"`modelserve up` exited {proc.returncode}",
                             no_room=proc.returncode == DeviceError.exit_code)  # fmt: skip
        return upstream_of(json.loads(out)["deployment"])

    async def stop(self, plan: MemberPlan) -> None:
        if plan.external_url:
            return
        proc = await asyncio.create_subprocess_exec(*plan.stop_argv, stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.PIPE, env=member_env())  # fmt: skip
        try:
            _, err = await asyncio.wait_for(proc.communicate(), 120)
        except TimeoutError:
            await _interrupt(proc)
            raise StartError(f"`modelserve down {plan.deployment}` did not finish in 120 s") from None
        # 10: no such deployment - already gone, which is what we wanted.
        if proc.returncode not in (0, 10):
            raise StartError(_last_lines(err.decode(errors="replace")) or f"down exited {proc.returncode}")

    def alive(self, plan: MemberPlan, upstream: Upstream) -> bool:
        return all(_same_process(pid, created) for pid, created in upstream.pids)

    def adopt(self, plan: MemberPlan) -> Upstream | None:
        if plan.external_url or not records.exists(plan.deployment):
            return None
        try:
            record = records.load(plan.deployment)
        except Exception:  # a damaged record: `down` cleans it when the member starts
            return None
        up = upstream_of({"base_url": record.base_url, "served_model_name": record.served_model_name,
                          "processes": [{"pid": p.pid, "create_time": p.create_time} for p in record.processes]})  # fmt: skip
        return up if record.status == "ready" and up.pids and self.alive(plan, up) else None


def upstream_of(dep: dict[str, Any]) -> Upstream:
    pids = tuple((int(p["pid"]), float(p["create_time"])) for p in dep.get("processes", []))
    return Upstream(str(dep["base_url"]).rstrip("/"), str(dep["served_model_name"]), pids)


def _same_process(pid: int, created: float) -> bool:
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - created) < 1.0 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def _interrupt(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), STOP_GRACE)
    except TimeoutError:
        proc.kill()
        await proc.wait()


def _last_lines(text: str, n: int = 6) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[-n:])
