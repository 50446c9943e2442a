"""`modelserve up -c FLEET.yaml --dry-run` in process, with the script test backend: the gateway's
plan and every member's as the gateway's `up` of it would make it, as text and as JSON, with
nothing started and nothing written; what would stop the real `up` comes as a warning. (A free
port is picked for each member's plan, and the gateway's port is checked: sockets, hence here.)"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from click.testing import CliRunner, Result

from launcher import cli
from tests.procs import with_home


def up(*args: str) -> Result:
    return CliRunner().invoke(cli.main, ["up", *args])


def fleet_file(tmp_path: Path, port: int = 18123) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(
        f"name: lab\ngateway: {{port: {port}, api_key: gw-key}}\ndeployments:\n"
        f"  - {{name: chat, model: {tmp_path}, backend: script, preload: true}}\n"
        f"  - {{name: coder, model: {tmp_path}, backend: script, served_model_name: coder-v1, port: 18124}}\n"
    )
    return path


def test_a_fleet_dry_run_shows_every_plan_and_starts_nothing(tmp_path: Path, modelserve_home: Path,
                                                             script_backend: None) -> None:  # fmt: skip
    path = fleet_file(tmp_path)
    result = up("-c", str(path), "--dry-run", "--agentscope-config", str(tmp_path / "agents.json"))
    assert result.exit_code == 0, result.output
    text = result.output
    assert text.startswith("fleet lab: gateway on http://127.0.0.1:18123/v1, 2 member(s); a dry run: nothing started")
    assert f"  agentscope: {tmp_path / 'agents.json'}  (config_name: lab-chat-openai, lab-coder-v1-openai)" in text
    assert "  api key: gateway.api_key (every route but /health)" in text
    assert f"launcher.gateway {modelserve_home / 'fleets' / 'lab' / 'gateway.json'}\n" in text
    assert "member chat: model id 'chat', loaded by `up` (preload); a free loopback port at each start" in text
    assert "member coder: model id 'coder-v1', started on its first request; its port from the fleet file" in text
    assert "deployment lab.chat: script (asked for)" in text and "deployment lab.coder: script (asked for)" in text
    assert "  name from fleet lab (fleet.yaml)" in text and "tests/programs/http_server.py 18124\n" in text
    assert "gw-key" not in text
    as_json = json.loads(up("-c", str(path), "--dry-run", "--json").output)
    assert [m["plan"]["deployment"] for m in as_json["members"]] == ["lab.chat", "lab.coder"]
    assert (as_json["dry_run"], as_json["gateway"]["port"], as_json["gateway"]["api_key"]) == (True, 18123, True)
    assert as_json["members"][1]["plan"]["processes"][0]["argv"][-1] == "18124"
    assert not modelserve_home.exists() and not (tmp_path / "agents.json").exists()  # nothing written
    assert with_home(modelserve_home) == []


def test_a_fleet_dry_run_says_what_would_stop_up(tmp_path: Path, script_backend: None) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        result = up("-c", str(fleet_file(tmp_path, port=held.getsockname()[1])), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "warning: `up` would stop here: port" in result.output
