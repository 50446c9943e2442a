"""Helpers for tests that run the Ollama stand-in (tests/ollama_standin/ollama): PATH with the
stand-in first, starting one yourself (an "already running" Ollama), tiny GGUF files."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import struct
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psutil

STANDIN_DIR = Path(__file__).resolve().parent
STANDIN = STANDIN_DIR / "ollama"


def env_with_standin(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with the stand-in's folder first on PATH (so `ollama` is the stand-in)."""
    out = dict(env)
    out["PATH"] = f"{STANDIN_DIR}{os.pathsep}{env.get('PATH', '')}"
    return out


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def post_json(url: str, body: Mapping[str, Any], timeout: float = 30.0) -> Any:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        raw = resp.read()
    return json.loads(raw) if raw.strip() else None


def post_ndjson(url: str, body: Mapping[str, Any], timeout: float = 30.0) -> list[dict[str, Any]]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return [json.loads(line) for line in resp.read().splitlines() if line.strip()]


def wait_answering(base: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30.0) -> str:
    """Poll GET /api/version until it answers (deadline-bound); returns the version."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the stand-in exited with {proc.returncode} while starting")
        try:
            return str(get_json(base + "/api/version", timeout=1)["version"])
        except OSError as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{base} did not answer within {timeout} s: {last}")


@contextlib.contextmanager
def running_standin(port: int, models: Path | None, log: Path, env: Mapping[str, str] | None = None) -> Iterator[
        subprocess.Popen[bytes]]:  # fmt: skip
    """`ollama serve` (the stand-in) on 127.0.0.1:PORT in its own session; stopped (and waited
    for) on exit, whatever the test did. ``models`` None: no OLLAMA_MODELS (a temporary store)."""
    full = dict(env or os.environ)
    full["OLLAMA_HOST"] = f"127.0.0.1:{port}"
    full.pop("OLLAMA_MODELS", None)
    if models is not None:
        full["OLLAMA_MODELS"] = str(models)
    with log.open("wb") as out:
        proc = subprocess.Popen([str(STANDIN), "serve"], stdout=out, stderr=subprocess.STDOUT, env=full,
                                start_new_session=True)  # fmt: skip
    try:
        wait_answering(f"http://127.0.0.1:{port}", proc)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def standin_servers(port: int) -> list[psutil.Process]:
    """Live stand-in servers bound (by OLLAMA_HOST) to ``port``: what a test must not leave behind."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmdline = proc.info["cmdline"] or []
            if not any(str(STANDIN) == part or part.endswith("/ollama_standin/ollama") for part in cmdline):
                continue
            if proc.environ().get("OLLAMA_HOST", "").endswith(f":{port}") and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def write_gguf(path: Path, metadata: Mapping[str, str | int] | None = None, padding: int = 4096) -> Path:
    """A small file in GGUF v3 layout: magic, version, 0 tensors, the given metadata (strings as
    type 8, ints as uint32 type 4), then ``padding`` zero bytes standing in for weights."""
    meta: dict[str, str | int] = dict(metadata or {"general.architecture": "llama", "general.name": "tiny",
                                                   "general.file_type": 3})  # fmt: skip
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, 0, len(meta)))
    for key, value in meta.items():
        out += struct.pack("<Q", len(key.encode())) + key.encode()
        if isinstance(value, int):
            out += struct.pack("<II", 4, value)
        else:
            out += struct.pack("<IQ", 8, len(value.encode())) + value.encode()
    out += bytes(padding)
    path.write_bytes(bytes(out))
    return path
