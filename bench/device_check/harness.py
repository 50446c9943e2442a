"""What the inner steps share: the installed ``modelserve`` command, plain HTTP, and the machine's
memory as NVML (CUDA) or /proc (CPU) reads it. Standard library, psutil and pynvml only."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.device_check.summary import Budget, Summary

MIB = 1024 * 1024


@dataclass
class Ctx:
    device: str  # cuda | cpu
    out: Path  # what comes back ($OUT)
    work: Path  # scratch: models, state, logs
    site: Path  # the installed wheelhouse
    budget: Budget
    summary: Summary
    # Models the steps build (models.py), by role: served, fits, too_big.
    models: dict[str, Path] = field(default_factory=dict)
    logs: list[str] = field(default_factory=list)  # text for logs.txt

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a `modelserve` command: the wheelhouse first on the path, its own state."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")}
        env.update({"PYTHONPATH": str(self.site), "MODELSERVE_HOME": str(self.work / "home"),
                    "MODELSERVE_CACHE": str(self.work / "cache"), "HF_HUB_OFFLINE": "1",
                    "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})  # fmt: skip
        env.update(extra)
        return env

    def modelserve(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None,
                   budgeted: bool = True) -> Result:  # fmt: skip
        """Run the installed ``modelserve`` (the wheel's console script) from a scratch folder,
        within what is left of the run's time unless not ``budgeted`` (the final clean-up)."""
        cmd = [str(self.site / "bin" / "modelserve"), *args]
        started = time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=self.work, env=env or self.env(),
                                  timeout=self.budget.timeout(timeout) if budgeted else timeout)  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
            return Result(args, -1, out, err + f"\n(killed after {exc.timeout:.0f} s)", time.monotonic() - started)
        result = Result(args, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
        self.logs.append(f"$ modelserve {' '.join(args)}\n(exit {proc.returncode} in {result.seconds:.1f} s)\n"
                         f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}")  # fmt: skip
        return result


@dataclass
class Result:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str
    seconds: float

    def json(self) -> Any:
        return json.loads(self.stdout)

    def why(self) -> str:
        return f"exit {self.code}: {(self.stderr or self.stdout).strip()[-600:]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, body: Any = None, timeout: float = 60) -> tuple[int, Any]:
    """(status, parsed JSON or text) of one request; connection errors are status 0."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        return 0, f"{type(exc).__name__}: {exc}"
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def metrics(base: str) -> dict[str, float]:
    """The server's Prometheus text as {"name{labels}": value}."""
    status, text = http("GET", base + "/metrics")
    if status != 200 or not isinstance(text, str):
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


# ---- memory as the machine reports it -------------------------------------------------------


def nvml() -> Any:
    import pynvml

    pynvml.nvmlInit()
    return pynvml


def gpu_memory(index: int = 0) -> dict[str, int]:
    """NVML's reading of one GPU, in bytes (free counts every process's use, ours too)."""
    pynvml = nvml()
    try:
        mem = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(index))
        return {"total": int(mem.total), "used": int(mem.used), "free": int(mem.free)}
    finally:
        pynvml.nvmlShutdown()


def gpu_processes(index: int = 0) -> dict[int, int | None]:
    """pid -> bytes it holds on the GPU, as NVML lists compute processes (None: not reported)."""
    pynvml = nvml()
    try:
        procs = pynvml.nvmlDeviceGetComputeRunningProcesses(pynvml.nvmlDeviceGetHandleByIndex(index))
        return {int(p.pid): (int(p.usedGpuMemory) if p.usedGpuMemory is not None else None) for p in procs}
    finally:
        pynvml.nvmlShutdown()


def free_memory(ctx: Ctx) -> int:
    """What the launcher's fit check compares against: a GPU's free memory, or the host's available."""
    return gpu_memory()["free"] if ctx.cuda else int(psutil.virtual_memory().available)


def survivors(record: dict[str, Any]) -> list[str]:
    """Live processes of a deployment: its recorded pids (same start time), anything in their
    process groups, anything carrying its marker. A zombie is dead (only its parent, often init
    here, has not collected its exit status yet)."""
    left = []
    marker = record.get("marker")
    groups = {p["pgid"] for p in record.get("processes", [])}
    for proc in psutil.process_iter(["pid", "create_time", "cmdline"]):
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            mine = any(proc.pid == p["pid"] and abs(proc.info["create_time"] - p["create_time"]) < 1
                       for p in record.get("processes", []))  # fmt: skip
            if not mine and groups:
                mine = os.getpgid(proc.pid) in groups
            if not mine and marker:
                mine = proc.environ().get("MODELSERVE_DEPLOYMENT_ID") == marker
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
        if mine:
            left.append(f"pid {proc.pid}: {' '.join(proc.info['cmdline'] or [])[:200]}")
    return left
