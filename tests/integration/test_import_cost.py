"""What the everyday commands import. None imports an engine (torch, transformers, flask,
vllm, ...); `--help`, `status`, `down`, `logs`, `health` and the other commands that need no
spec also leave out pydantic and the spec models, YAML and http.client (bench/cli_startup.py
measures what that buys)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

ENGINES = {"torch", "transformers", "flask", "werkzeug", "granian", "numpy", "vllm", "fastchat", "modelscope", "tokenizers"}
SPEC = {"pydantic", "pydantic_core", "yaml", "launcher.core.deployment_spec", "launcher.core.deployment", "http.client"}

PROBE = """
import atexit, json, sys
atexit.register(lambda: sys.stderr.write("\\nMODULES=" + json.dumps(sorted(sys.modules)) + "\\n"))
from launcher.cli import main
sys.argv = ["modelserve"] + json.loads(sys.argv[1])
main()
"""

LIGHT = [["--help"], ["up", "--help"], ["status"], ["status", "--json"], ["down", "--all"], ["logs", "nothing-here"],
         ["health", "http://127.0.0.1:9/health"], ["devices"], ["config", "--help"], ["run", "--help"],
         ["systemd", "render", "--help"], ["env", "--help"]]  # fmt: skip
# These load every backend class (each defines its options model with pydantic).
NEEDS_BACKENDS = [["backends"], ["env", "list"]]


def loaded_by(args: list[str], env: dict[str, str]) -> set[str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True, env=env,
                          timeout=60)  # fmt: skip
    line = next(x for x in proc.stderr.splitlines() if x.startswith("MODULES="))
    modules = set(json.loads(line[len("MODULES="):]))
    assert "launcher.cli.root" in modules  # the probe really ran the CLI
    return modules | {name.split(".")[0] for name in modules}


@pytest.mark.parametrize("args", LIGHT + NEEDS_BACKENDS, ids=" ".join)
def test_command_imports_no_engine(args: list[str], cli_env: dict[str, str]) -> None:
    found = loaded_by(args, cli_env) & ENGINES
    assert found == set(), f"`modelserve {' '.join(args)}` imported {sorted(found)}"


@pytest.mark.parametrize("args", LIGHT, ids=" ".join)
def test_command_imports_no_spec_models(args: list[str], cli_env: dict[str, str]) -> None:
    found = loaded_by(args, cli_env) & SPEC
    assert found == set(), f"`modelserve {' '.join(args)}` imported {sorted(found)}"


def test_status_with_a_deployment_imports_no_spec_models(cli_env: dict[str, str]) -> None:
    """The probes a record stores load without the backend (pydantic) or http.client."""
    import psutil

    from backends.probes import HttpOk
    from launcher.core.probe import to_dict
    from launcher.store import records

    with subprocess.Popen(["sleep", "60"]) as server:  # a live process: status asks its probes
        try:
            proc = records.ProcessRecord("server", server.pid, server.pid, psutil.Process(server.pid).create_time(),
                                         ["sleep"], "/l")  # fmt: skip
            records.save(records.DeploymentRecord(
                name="r", backend="script", api="openai", model="m", model_path=None, served_model_name="m",
                host="127.0.0.1", port=9, base_url="http://127.0.0.1:9", endpoints={}, marker="x", started_at=0,
                log_dir="/l", status="ready", processes=[proc], probes=[to_dict(HttpOk("http://127.0.0.1:9", path="/health"))],
            ))  # fmt: skip
            modules = loaded_by(["status"], cli_env)
        finally:
            server.kill()
    assert "backends.probes" in modules  # it did ask the probe
    assert modules & (SPEC | ENGINES | {"backends.base"}) == set()
