from __future__ import annotations

from pathlib import Path

import pytest

from launcher.core import resources
from launcher.core.deployment import Deployment
from launcher.core.deployment_spec import read_yaml
from launcher.core.errors import ConfigError
from launcher.lifecycle import specs


def write(tmp_path: Path, text: str, name: str = "dep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_file_matches_model_defaults() -> None:
    # configs/defaults.yaml is the documented lowest layer; it must not drift from the model.
    loaded = specs.load(None, {"model": "m"})
    assert loaded.deployment == Deployment(model="m")


def test_defaults_file_lists_every_key() -> None:
    text = resources.config_path("defaults.yaml").read_text()
    for key in Deployment.model_fields:
        if key != "options":  # filled from the backend sections, never written as a key
            assert f"{key}:" in text, f"{key} is not documented in configs/defaults.yaml"


def test_defaults_file_documents_every_builtin_backend_section() -> None:
    import backends

    text = resources.config_path("defaults.yaml").read_text()
    for name, entry in backends.entries().items():
        if entry.builtin:
            assert f"# {name}:" in text or f"({name}: the same keys)" in text, f"no {name}: section documented"
            for key in backends.get(name).Options.model_fields:
                assert f"#   {key}:" in text, f"{name}.{key} is not documented in configs/defaults.yaml"


def test_precedence_cli_over_file_over_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "model: from-file\nport: 9001\nhost: 0.0.0.0\nagentscope:\n  max_tokens: 64\n")
    loaded = specs.load(path, {"port": 9002, "model": None, "agentscope.temperature": 0.0})
    dep = loaded.deployment
    assert dep.model == "from-file"  # None means "flag not given"
    assert dep.port == 9002
    assert dep.host == "0.0.0.0"
    assert dep.timeout == 600  # from defaults.yaml
    # nested settings merge key by key across layers
    assert dep.agentscope.max_tokens == 64
    assert dep.agentscope.temperature == 0.0
    assert dep.agentscope.config == "./model_config.json"
    assert loaded.source("port") == "command line"
    assert loaded.source("host") == f"{path}:3"
    defaults = resources.config_path("defaults.yaml").read_text().splitlines()
    line = next(i for i, text in enumerate(defaults, 1) if text.startswith("timeout:"))
    assert loaded.source("timeout") == f"{resources.config_path('defaults.yaml')}:{line}"


def test_unknown_key_names_file_line_and_suggests(tmp_path: Path) -> None:
    path = write(tmp_path, "model: m\n\nprot: 8000\n")
    with pytest.raises(ConfigError) as err:
        specs.load(path, {})
    assert f"{path}:3 prot: unknown key (did you mean 'port'?)" in str(err.value)
    assert err.value.exit_code == 3


def test_wrong_type_names_file_line(tmp_path: Path) -> None:
    path = write(tmp_path, "model: m\nagentscope:\n  request_timeout: soon\n")
    with pytest.raises(ConfigError) as err:
        specs.load(path, {})
    assert f"{path}:3 agentscope.request_timeout:" in str(err.value)
    assert "valid number" in str(err.value)


def test_nested_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path, "model: m\nagentscope:\n  confg: x.json\n")
    with pytest.raises(ConfigError, match=r"dep.yaml:3 agentscope.confg: unknown key \(did you mean 'config'\?\)"):
        specs.load(path, {})


def test_several_errors_reported_together(tmp_path: Path) -> None:
    path = write(tmp_path, "model: m\nport: 70000\ndevice: gpu\n")
    with pytest.raises(ConfigError) as err:
        specs.load(path, {})
    text = str(err.value)
    assert f"{path}:2 port:" in text and f"{path}:3 device:" in text
    assert "expected auto, cpu, cuda or cuda:0[,1...]" in text


def test_cli_value_errors_say_command_line() -> None:
    with pytest.raises(ConfigError, match="command line: name: Value error, use letters"):
        specs.load(None, {"model": "m", "name": "bad name!"})


def test_missing_model() -> None:
    with pytest.raises(ConfigError, match="model: required, but not given"):
        specs.load(None, {})


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    path = write(tmp_path, "model: m\nport: [8000\nhost: x\n")
    with pytest.raises(ConfigError, match=rf"{path}:\d+: not valid YAML"):
        specs.load(path, {})


def test_duplicate_keys_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "model: m\nport: 1\nport: 2\n")
    with pytest.raises(ConfigError, match=r"dep.yaml:3 port: duplicate key \(first at line 2\)"):
        specs.load(path, {})


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- model: m\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        specs.load(path, {})


def test_missing_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        specs.load(tmp_path / "nope.yaml", {})


@pytest.mark.parametrize(
    ("model", "name"),
    [("smollm2-135m", "smollm2-135m"), ("meta-llama/Llama-2-7b-chat-hf", "llama-2-7b-chat-hf"),
     ("/models/My Model/", "my-model"), ("./x", "x")],
)
def test_default_name(model: str, name: str) -> None:
    assert Deployment(model=model).deployment_name == name


def test_client_host_for_wildcard_bind() -> None:
    assert Deployment(model="m", host="0.0.0.0", port=1).base_url == "http://127.0.0.1:1"
    assert Deployment(model="m", host="::", port=1).base_url == "http://[::1]:1"


EXAMPLES = sorted(p for p in resources.configs_dir().glob("*.yaml") if "\nbackend:" in "\n" + p.read_text())


def test_there_is_an_example_per_backend() -> None:
    import backends

    named = {read_yaml(p).data.get("backend") for p in EXAMPLES}
    builtin = {name for name, entry in backends.entries().items() if entry.builtin}
    assert builtin <= named, f"no configs/ example for {builtin - named}"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_packaged_example_is_valid(path: Path) -> None:
    loaded = specs.load(path, {"model": "m"} if path.name == "defaults.yaml" else {})
    assert loaded.deployment.model
