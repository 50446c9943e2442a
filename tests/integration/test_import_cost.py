"""`--help`, `status`, `down`, `logs` and `backends` must not import any engine."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = {"torch", "transformers", "flask", "werkzeug", "numpy", "vllm", "fastchat", "modelscope", "tokenizers"}

PROBE = """
import atexit, json, sys
atexit.register(lambda: sys.stderr.write("\\nMODULES=" + json.dumps(sorted(sys.modules)) + "\\n"))
from launcher.cli import main
sys.argv = ["modelserve"] + json.loads(sys.argv[1])
main()
"""


@pytest.mark.parametrize(
    "args",
    [["--help"], ["up", "--help"], ["status"], ["status", "--json"], ["down", "--all"], ["backends"],
     ["logs", "nothing-here"], ["health", "http://127.0.0.1:9/health"], ["devices"], ["env", "list"], ["config", "--help"], ["run", "--help"],
     ["systemd", "render", "--help"]],  # fmt: skip
    ids=" ".join,
)
def test_command_imports_no_engine(args: list[str], cli_env: dict[str, str]) -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True,
                          env=cli_env, timeout=60)  # fmt: skip
    line = next(x for x in proc.stderr.splitlines() if x.startswith("MODULES="))
    loaded = {name.split(".")[0] for name in json.loads(line[len("MODULES="):])}
    assert loaded & HEAVY == set(), f"`modelserve {' '.join(args)}` imported {sorted(loaded & HEAVY)}"
    assert "launcher" in loaded  # the probe really ran the CLI
