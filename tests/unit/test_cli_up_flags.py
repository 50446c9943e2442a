"""`up`'s key sources (--api-key, --api-key-file, MODELSERVE_API_KEY, the spec) and its flags on a
fleet file: --agentscope-config names its one config, the flags that set one deployment's values
are refused naming the fleet file's key (--dry-run: tests/integration/test_fleet_dry_run.py). The
lifecycle is replaced where a test only checks the translation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from launcher import cli
from launcher.core.deployment_spec import LoadedSpec
from launcher.lifecycle import fleet as fleets
from launcher.lifecycle import up as starting
from launcher.store import records


@pytest.fixture()
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def fake_up(loaded: LoadedSpec, **_: Any) -> starting.UpResult:
        seen["loaded"] = loaded
        dep = loaded.deployment
        rec = records.DeploymentRecord(
            name=dep.deployment_name, backend="script", api="openai", model=dep.model, model_path="/m",
            served_model_name="m", host=dep.host, port=dep.port, base_url=dep.base_url, endpoints={}, marker="x",
            started_at=0, log_dir="/l",
        )  # fmt: skip
        return starting.UpResult(rec, "asked for", "local /m", 1.0, warnings=list(loaded.notes))

    monkeypatch.setattr(starting, "up", fake_up)
    monkeypatch.delenv("MODELSERVE_API_KEY", raising=False)
    return seen


def up(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli.main, ["up", *args], env=env)


def key_file(tmp_path: Path, text: str = "from-the-file\n") -> str:
    path = tmp_path / "key"
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def test_the_key_comes_from_the_environment(captured: dict[str, Any]) -> None:
    result = up("-m", "m", env={"MODELSERVE_API_KEY": "from-env"})
    assert result.exit_code == 0, result.output
    assert captured["loaded"].deployment.api_key == "from-env"
    assert captured["loaded"].source("api_key") == "MODELSERVE_API_KEY"


def test_the_key_file_and_the_flag_beat_the_environment(captured: dict[str, Any], tmp_path: Path) -> None:
    path = key_file(tmp_path)
    assert up("-m", "m", "--api-key-file", path, env={"MODELSERVE_API_KEY": "from-env"}).exit_code == 0
    assert captured["loaded"].deployment.api_key == "from-the-file"
    assert captured["loaded"].source("api_key") == f"--api-key-file {path}"
    assert up("-m", "m", "--api-key", "from-flag", env={"MODELSERVE_API_KEY": "from-env"}).exit_code == 0
    assert captured["loaded"].deployment.api_key == "from-flag"


def test_the_environment_beats_the_yaml_and_says_so(captured: dict[str, Any], tmp_path: Path) -> None:
    spec = tmp_path / "d.yaml"
    spec.write_text("model: m\napi_key: from-yaml\n")
    result = up("-c", str(spec), env={"MODELSERVE_API_KEY": "from-env"})
    assert captured["loaded"].deployment.api_key == "from-env"
    assert f"warning: MODELSERVE_API_KEY replaces the api_key at {spec}:2" in result.output
    assert up("-c", str(spec)).exit_code == 0
    assert captured["loaded"].deployment.api_key == "from-yaml"


def test_two_key_flags_are_refused(captured: dict[str, Any], tmp_path: Path) -> None:
    result = up("-m", "m", "--api-key", "a", "--api-key-file", key_file(tmp_path))
    assert result.exit_code == 3
    assert "error: --api-key and --api-key-file both give the key" in result.output
    assert "loaded" not in captured


@pytest.mark.parametrize(("text", "says"), [
    ("", "holds 0 non-empty lines"),
    ("one\ntwo\n", "holds 2 non-empty lines"),
    ("with space\n", "contains whitespace"),
])  # fmt: skip
def test_a_key_file_holds_the_key_alone(captured: dict[str, Any], tmp_path: Path, text: str, says: str) -> None:
    result = up("-m", "m", "--api-key-file", key_file(tmp_path, text))
    assert result.exit_code == 3 and says in result.output
    assert "fix: write the key alone on one line" in result.output


def test_a_key_file_others_can_read_is_warned_about(captured: dict[str, Any], tmp_path: Path) -> None:
    path = key_file(tmp_path)
    Path(path).chmod(0o644)
    result = up("-m", "m", "--api-key-file", path)
    assert result.exit_code == 0
    assert f"warning: {path} can be read by other users (mode 644): chmod 600 {path}" in result.output


# ---- fleets ------------------------------------------------------------------------------------


def fleet_file(tmp_path: Path, port: int = 18123) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(
        f"name: lab\ngateway: {{port: {port}, api_key: gw-key}}\ndeployments:\n"
        f"  - {{name: chat, model: {tmp_path}, backend: script, preload: true}}\n"
        f"  - {{name: coder, model: {tmp_path}, backend: script, served_model_name: coder-v1, port: 18124}}\n"
    )
    return path


def test_flags_without_meaning_for_a_fleet_name_the_key_to_set(tmp_path: Path) -> None:
    result = up("-c", str(fleet_file(tmp_path)), "-p", "9000", "-m", "x", "--api-key", "k", "--timeout", "5")
    assert result.exit_code == 3
    assert "is a fleet: --model, --port, --timeout, --api-key set(s) one deployment's value" in result.output
    assert ("fix: write it in the fleet file: --model: deployments[].model (per member); --port: gateway.port "
            "(members get free ones); --timeout: deployments[].timeout (a member's start) or "
            "policy.start_timeout (a request's wait); --api-key: gateway.api_key") in result.output  # fmt: skip


def test_agentscope_config_names_the_fleets_one_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                       script_backend: None) -> None:  # fmt: skip
    seen: dict[str, Any] = {}

    def fake_up_fleet(path: str, **kwargs: Any) -> fleets.FleetUpResult:
        fleet = fleets.load(path, agentscope_config=kwargs["agentscope_config"])
        seen["config"] = fleet.agentscope.config
        rec = records.DeploymentRecord(name="lab", backend="gateway", api="openai", model="fleet", model_path=None,
                                       served_model_name="chat", host="127.0.0.1", port=1, base_url="http://h:1",
                                       endpoints={}, marker="x", started_at=0, log_dir="/l")  # fmt: skip
        return fleets.FleetUpResult(rec, fleet, 1.0)

    monkeypatch.setattr(fleets, "up_fleet", fake_up_fleet)
    result = up("-c", str(fleet_file(tmp_path)), "--agentscope-config", "agents.json")
    assert result.exit_code == 0, result.output
    assert seen["config"] == "agents.json"
