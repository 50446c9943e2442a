"""Fleet files: a valid one loads with every member checked as a deployment; invalid ones fail
with every problem located as FILE:LINE key: message."""

from __future__ import annotations

from pathlib import Path

import pytest

import backends
from launcher.core.errors import ConfigError
from launcher.core.fleet_spec import Fleet, is_fleet_file, load_fleet

ROOT = Path(__file__).resolve().parents[2]


def readme_fleet() -> str:
    """The fleet file the README shows (its first yaml block that starts with `# fleet.yaml`)."""
    text = (ROOT / "README.md").read_text()
    block = text.split("```yaml\n# fleet.yaml\n", 1)[1].split("```", 1)[0]
    return block


VALID = readme_fleet()


def load(tmp_path: Path, text: str) -> Fleet:
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    return load_fleet(path, sections=backends.option_models(), backends=tuple(backends.names()))


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    assert caught.value.exit_code == 3
    assert "README: Fleets" in (caught.value.hint or "")
    lines = caught.value.message.splitlines()
    assert lines[0] == "invalid fleet file:"
    return [line.strip().replace(str(tmp_path) + "/", "") for line in lines[1:]]


def test_the_readme_fleet_loads(tmp_path: Path) -> None:
    fleet = load(tmp_path, VALID)
    assert [m.name for m in fleet.members] == ["chat", "coder", "tiny"]
    assert [m.model_id for m in fleet.members] == ["chat", "coder", "tiny"]
    assert [m.preload for m in fleet.members] == [True, False, False]
    assert fleet.policy.max_loaded == 2 and fleet.policy.idle_ttl == 600
    assert fleet.members[1].spec.deployment.backend == "vllm"
    assert fleet.members[0].port is None  # chosen when it starts
    assert is_fleet_file(tmp_path / "fleet.yaml")


def test_a_plain_deployment_file_is_not_a_fleet(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text("model: smollm2-135m\nport: 8001\n")
    assert not is_fleet_file(tmp_path / "one.yaml")


def test_duplicate_names_and_ids(tmp_path: Path) -> None:
    text = VALID.replace("name: tiny,  model", "name: chat,  model").replace("served_model_name: coder", "served_model_name: chat")
    found = problems(tmp_path, text)
    assert "fleet.yaml:6 deployments.1.served_model_name: model id 'chat' is also deployments[0]'s" in found
    assert "fleet.yaml:7 deployments.2.name: duplicate member name 'chat' (also deployments[0])" in found


def test_port_clashes_with_the_gateway_and_between_members(tmp_path: Path) -> None:
    text = VALID.replace("backend: vllm,", "backend: vllm, port: 8000,").replace("backend: ollama}", "backend: ollama, port: 9000}")
    text = text.replace("preload: true}", "preload: true, port: 9000}")
    found = problems(tmp_path, text)
    assert found == [
        "fleet.yaml:6 deployments.1.port: port 8000 is also the gateway's (leave port out: members get a free one)",
        "fleet.yaml:7 deployments.2.port: port 9000 is also member 'chat''s (leave port out: members get a free one)",
    ]


def test_unknown_backend_names_the_closest(tmp_path: Path) -> None:
    found = problems(tmp_path, VALID.replace("backend: ollama", "backend: olama"))
    assert found == ["fleet.yaml:7 deployments.2.backend: unknown backend 'olama' (did you mean 'ollama'?)"]


def test_max_loaded_below_the_preloaded_members(tmp_path: Path) -> None:
    text = VALID.replace("max_loaded: 2", "max_loaded: 1").replace("served_model_name: coder}", "served_model_name: coder, preload: true}")
    found = problems(tmp_path, text)
    assert found == ["fleet.yaml:3 policy.max_loaded: 1 is below the 2 members marked preload (raise it, or preload fewer)"]


def test_member_errors_keep_their_lines(tmp_path: Path) -> None:
    text = VALID.replace("backend: vllm,", "backend: vllm, dtype: float8,") + "  - {name: x, preload: maybe, model: m, host: 0.0.0.0}\n"
    found = problems(tmp_path, text)
    assert found[0].startswith("fleet.yaml:6 dtype: Input should be 'auto'")
    assert "fleet.yaml:8 deployments.3.preload: expected true or false" in found
    assert any(f.startswith("fleet.yaml:8 deployments.3.host: members listen on loopback") for f in found)


def test_top_level_mistakes(tmp_path: Path) -> None:
    text = VALID.replace("idle_ttl: 600", "idle_tll: 600").replace("port: 8000}", "port: 0}").replace("name: lab", "name: my.lab")
    found = problems(tmp_path, text)
    assert found == [
        "fleet.yaml:1 name: Value error, use letters, digits, '_' or '-' (at most 63, starting with a letter or digit)",
        "fleet.yaml:2 gateway.port: Input should be greater than or equal to 1",
        "fleet.yaml:3 policy.idle_tll: unknown key",
    ]
    assert problems(tmp_path, "name: lab\ndeployments: []\n") == [
        "fleet.yaml:2 deployments: List should have at least 1 item after validation, not 0"
    ]
