from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import envs

ROOT = Path(__file__).resolve().parents[2]


def modelserve_cmd() -> list[str]:
    """The installed console script when there is one (what users run), else the module."""
    script = Path(sys.executable).parent / "modelserve"
    return [str(script)] if script.exists() else [sys.executable, "-m", "launcher.cli"]


@pytest.fixture(scope="session")
def agentscope_python() -> str:
    """The AgentScope 0.1.6 client venv, built by the test setup on first use (~70 s)."""
    return str(envs.ensure("agentscope-0.1.6", log=lambda m: print(m, file=sys.stderr)))


@pytest.fixture()
def modelserve(cli_env: dict[str, str]):
    def run(*args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*modelserve_cmd(), *args], capture_output=True, text=True, env=cli_env,
                              timeout=timeout)  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(f"modelserve {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run


def ask_agentscope(python: str, config: Path, question: str, *names: str) -> list[dict[str, str]]:
    import json

    script = ROOT / "tests" / "clients" / "agentscope_016.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "MODELSERVE_"))}
    proc = subprocess.run([python, str(script), str(config), question, *names], capture_output=True, text=True,
                          timeout=300, env=env, cwd=config.parent)  # fmt: skip
    assert proc.returncode == 0, f"AgentScope client failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def client_python(name: str) -> str:
    return str(envs.ensure(name, log=lambda m: print(m, file=sys.stderr)))


@pytest.fixture(scope="session")
def agentscope1_python() -> str:
    """The AgentScope 1.0.21 client venv (with openai<2), built on first use."""
    return client_python("agentscope-1.0.21")


def client_lines(python: str, script: str, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                 timeout: float = 300) -> list[dict]:  # type: ignore[type-arg]  # fmt: skip
    """Run a client script (tests/clients) in its venv; every JSON line it printed."""
    import json

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "MODELSERVE_"))}
    proc = subprocess.run([python, str(ROOT / "tests" / "clients" / script), *args], capture_output=True, text=True,
                          timeout=timeout, env={**clean, **(env or {})}, cwd=cwd)  # fmt: skip
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def ask(python: str, script: str, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
        ) -> dict[str, str]:  # fmt: skip
    """Run a client script in its venv; its last JSON line is the answer."""
    reply: dict[str, str] = client_lines(python, script, *args, env=env, cwd=cwd)[-1]
    return reply


__all__ = ["ask", "ask_agentscope", "client_lines", "client_python", "modelserve_cmd", "shutil"]
