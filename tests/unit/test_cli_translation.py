"""The CLI only translates flags into a LoadedSpec and renders results; lifecycle is replaced here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from launcher import cli
from launcher.core.deployment_spec import LoadedSpec
from launcher.core.errors import PortInUse
from launcher.lifecycle import up as starting
from launcher.store import records


@pytest.fixture()
def captured(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def fake_up(loaded: LoadedSpec, **_: Any) -> starting.UpResult:
        seen["loaded"] = loaded
        dep = loaded.deployment
        rec = records.DeploymentRecord(
            name=dep.deployment_name, backend="flask-transformers", api="post", model=dep.model, model_path="/m",
            served_model_name="m", host=dep.host, port=dep.port, base_url=dep.base_url,
            endpoints={"post": f"{dep.base_url}/llm/"}, marker="x", started_at=0, log_dir="/l",
        )  # fmt: skip
        return starting.UpResult(rec, "asked for", "local /m", 1.0, warnings=["careful"])

    monkeypatch.setattr(starting, "up", fake_up)
    return seen


def test_up_flags_become_the_spec(captured: dict[str, Any], tmp_path: Path) -> None:
    yaml_file = tmp_path / "d.yaml"
    yaml_file.write_text("model: from-yaml\nport: 9000\nthreads: 3\n")
    result = CliRunner().invoke(cli.main, [
        "up", "-c", str(yaml_file), "-p", "9001", "--name", "n1", "--host", "0.0.0.0", "--api-key", "k",
        "--timeout", "12", "--agentscope-config", "cfg.json", "-b", "flask-transformers", "--device", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    dep = captured["loaded"].deployment
    assert (dep.model, dep.port, dep.name, dep.host, dep.api_key, dep.timeout) == ("from-yaml", 9001, "n1",
                                                                                 "0.0.0.0", "k", 12.0)  # fmt: skip
    assert (dep.backend, dep.device, dep.threads, dep.agentscope.config) == ("flask-transformers", "cpu", 3,
                                                                            "cfg.json")  # fmt: skip
    assert "warning: careful" in result.output


def test_errors_become_message_and_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_: Any, **__: Any) -> None:
        raise PortInUse("port 8000 is held by pid 1 (x)", "pick another port, e.g. -p 8001")

    monkeypatch.setattr(starting, "up", boom)
    result = CliRunner().invoke(cli.main, ["up", "-m", "m"])
    assert result.exit_code == 6
    assert "error: port 8000 is held by pid 1 (x)\n  fix: pick another port, e.g. -p 8001" in result.output
    debug = CliRunner().invoke(cli.main, ["--debug", "up", "-m", "m"])
    assert isinstance(debug.exception, PortInUse)  # --debug lets the traceback through


def test_status_json_envelope_when_empty() -> None:
    result = CliRunner().invoke(cli.main, ["status", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output) == {"version": 1, "deployments": [], "damaged": []}


def test_down_needs_a_name_or_all() -> None:
    assert CliRunner().invoke(cli.main, ["down"]).exit_code == 2


def test_every_command_has_an_example_in_help() -> None:
    for name in ("up", "down", "health"):
        text = CliRunner().invoke(cli.main, [name, "--help"]).output
        assert "modelserve " + name in text


def test_the_lazy_command_table_names_every_command_where_it_is() -> None:
    from launcher.cli.root import COMMAND_MODULES

    for name, module in COMMAND_MODULES.items():
        assert cli.main.get_command(None, name) is not None, f"{name} is not defined in launcher.cli.{module}"  # type: ignore[arg-type]
        assert cli.main.commands[name].callback.__module__ == f"launcher.cli.{module}"  # type: ignore[union-attr]
    assert set(cli.main.commands) == set(COMMAND_MODULES)  # nothing registered that --help would not list


def test_the_backends_matrix_golden() -> None:
    from launcher.cli.output import backends_text
    from launcher.lifecycle.listing import BackendRow
    from tests.golden import assert_golden

    native = {"messages": "native", "count_tokens": "native", "responses": "native"}
    translated = {k: "translated" for k in native}
    rows = [
        BackendRow("flask-transformers", "modelserve", True, version="5.0", summary="built-in", cpu=True, gpu=True,
                   capabilities=["post", "openai", "streaming", "tools", "structured-output", "embed", "rerank"],
                   auto_priority=10, surfaces=native),
        BackendRow("fastchat", "modelserve", False, reason="not installed here: fschat", summary="FastChat",
                   cpu=True, gpu=True, capabilities=["openai", "streaming"], surfaces=translated,
                   refusals=["rerank: it has no rerank route"]),
        BackendRow("echo", "modelserve-echo", True, summary="a plugin", cpu=True, capabilities=["openai"],
                   surfaces=translated),
        BackendRow("broken", "someone", False, reason="cannot load x:Y: ImportError"),
    ]  # fmt: skip
    assert_golden("cli/backends.txt", backends_text(rows) + "\n")
