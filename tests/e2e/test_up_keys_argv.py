"""API keys stay out of every process's command line: the built-in server started with
`--api-key-file`, and a fleet's gateway with `gateway.api_key`, read from /proc/*/cmdline of every
process on the machine, over and over while `up` runs and again while both serve. Each server
demands its key (401 without it, 200 with it), so the key did arrive, through the environment or
the gateway's 0600 plan file."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import requests

from launcher.process import ports
from tests.e2e.conftest import modelserve_cmd
from tests.ollama_standin.harness import env_with_standin
from tests.procs import with_home

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.usefixtures("cleanup_deployments")]
SERVER_KEY = "srv-7Hq2-not-in-argv"
GATEWAY_KEY = "gw-9Xk4-not-in-argv"


def argv_holding(*secrets: str) -> tuple[set[int], list[str]]:
    """(pids whose command line was read, those command lines that contain a secret)."""
    read, found = set(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        read.add(int(entry.name))
        found += [f"pid {entry.name}: {argv}" for secret in secrets if secret in argv]
    return read, found


def pids_of(home: Path, name: str) -> list[int]:
    return [p["pid"] for p in json.loads((home / "deployments" / name / "state.json").read_text())["processes"]]


def test_keys_are_in_no_process_argv_while_up_runs_and_after(cli_env: dict[str, str], tmp_path: Path,
                                                             modelserve_home: Path) -> None:  # fmt: skip
    key_file = tmp_path / "key"
    key_file.write_text(SERVER_KEY + "\n")
    key_file.chmod(0o600)
    port, gw_port = ports.free_port(), ports.free_port()
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(f"name: keyed\ngateway: {{port: {gw_port}, api_key: {GATEWAY_KEY}}}\nagentscope: {{config: null}}\n"
                     "deployments:\n  - {name: tiny, model: qwen2.5:0.5b, backend: ollama, preload: true}\n")  # fmt: skip
    env = {**env_with_standin(cli_env), "OLLAMA_MODELS": str(tmp_path / "ollama-models")}
    seen: list[str] = []
    scans = 0
    for args in (["-m", "smollm2-135m", "-p", str(port), "--name", "srv", "--api-key-file", str(key_file),
                  "--agentscope-config", str(tmp_path / "c.json")], ["-c", str(fleet)]):  # fmt: skip
        up = subprocess.Popen([*modelserve_cmd(), "up", *args], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
        deadline = time.monotonic() + 600
        while up.poll() is None and time.monotonic() < deadline:
            seen += argv_holding(SERVER_KEY, GATEWAY_KEY)[1]
            scans += 1
            time.sleep(0.1)
        out, err = up.communicate(timeout=30)
        assert up.returncode == 0, err
    assert scans >= 10  # the scans really ran while `up` worked (the model loads for seconds)

    read, found = argv_holding(SERVER_KEY, GATEWAY_KEY)
    servers = pids_of(modelserve_home, "srv") + pids_of(modelserve_home, "keyed") + pids_of(modelserve_home, "keyed.tiny")
    assert set(servers) <= read  # the built-in server, the gateway and the member were all read
    assert seen + found == []
    server_env = Path(f"/proc/{pids_of(modelserve_home, 'srv')[0]}/environ").read_bytes().split(b"\0")
    assert f"MODELSERVE_API_KEY={SERVER_KEY}".encode() in server_env  # how it reached the server instead

    for base, key in ((f"http://127.0.0.1:{port}", SERVER_KEY), (f"http://127.0.0.1:{gw_port}", GATEWAY_KEY)):
        assert requests.get(f"{base}/v1/models", timeout=30).status_code == 401
        assert requests.get(f"{base}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=30).ok

    for name in ("srv", "keyed"):
        subprocess.run([*modelserve_cmd(), "down", name], env=env, check=True, capture_output=True, timeout=120)
    deadline = time.monotonic() + 30
    while with_home(modelserve_home) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert with_home(modelserve_home) == []
    assert os.stat(key_file).st_mode & 0o777 == 0o600  # `up` only read it
