"""`modelserve config`: every client format for every endpoint kind (golden files), the
object-keyed merge AgentFabric files need, and the command itself driven by CliRunner against a
state record (no server)."""

from __future__ import annotations

import json
import multiprocessing
import os
import shlex
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from launcher.agents import agentscope, config_files, formats
from launcher.cli import ModelserveGroup
from launcher.cli.config import config_command
from launcher.core.deployment import AgentScopeSettings
from launcher.core.errors import ClientConfigError
from launcher.core.launch import ClientEndpoint
from launcher.store import records
from tests.golden import assert_golden

POST = ClientEndpoint("post_api_chat", "http://127.0.0.1:8000/llm/", "smollm2-135m")
OPENAI = ClientEndpoint("openai_chat", "http://127.0.0.1:8000/v1", "smollm2-135m")
OLLAMA = ClientEndpoint("ollama_chat", "http://127.0.0.1:11434", "qwen2.5:0.5b")
OLLAMA_V1 = ClientEndpoint("openai_chat", "http://127.0.0.1:11434/v1", "qwen2.5:0.5b")
KINDS = {"post": POST, "openai": OPENAI, "ollama": OLLAMA}
EXT = {"agentscope": "json", "modelscope-agent": "json", "agentfabric": "json", "agentscope-v1": "py",
       "agentscope-v2": "py", "openai-env": "env", "anthropic-env": "env", "codex": "toml", "openai-agents": "py",
       "agentscope-v1-anthropic": "py", "agentscope-v1-responses": "py", "agentscope-v2-anthropic": "py",
       "agentscope-v2-responses": "py"}  # fmt: skip
GREEDY = AgentScopeSettings(temperature=0, max_tokens=48, request_timeout=60)


def keyed(e: ClientEndpoint, key: str = "s3cret") -> ClientEndpoint:
    return ClientEndpoint(e.kind, e.url, e.model_name, key)


def render(fmt: str, *endpoints: ClientEndpoint, settings: AgentScopeSettings | None = None,
           only: str | None = None) -> formats.RenderedConfig:  # fmt: skip
    return formats.render(fmt, endpoints, settings or AgentScopeSettings(), deployment="smol", base="smol",  # type: ignore[arg-type]
                                 only=only)  # fmt: skip


# ---- renderers: golden files, every format x endpoint kind x API key -------------------------


# Ollama endpoints never carry a key (Ollama has no auth; see the test below).
CASES = [("post", None), ("post", "s3cret"), ("openai", None), ("openai", "s3cret"), ("ollama", None)]


@pytest.mark.parametrize("fmt", formats.FORMATS)
@pytest.mark.parametrize(("kind", "key"), CASES, ids=[f"{k}-{'key' if v else 'nokey'}" for k, v in CASES])
def test_every_format_for_every_endpoint_kind_golden(fmt: str, kind: str, key: str | None) -> None:
    endpoint = keyed(KINDS[kind], key) if key else KINDS[kind]
    name = f"clients/{fmt}/{kind}{'-key' if key else ''}"
    try:
        rendered = render(fmt, endpoint)
    except ClientConfigError as exc:
        # The format cannot express this kind: the whole message (what, why, the fix) is golden too.
        assert exc.exit_code == 9
        assert_golden(f"{name}.error.txt", str(exc) + "\n")
        return
    assert rendered.endpoints == (endpoint,)
    # Codex reads its key from the environment (env_key): its config never holds one.
    assert rendered.holds_secret == (bool(key) and fmt != "codex")
    assert_golden(f"{name}.{EXT[fmt]}", rendered.text)


@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_greedy_settings_golden(fmt: str) -> None:
    assert_golden(f"clients/{fmt}/openai-greedy.{EXT[fmt]}", render(fmt, OPENAI, settings=GREEDY).text)


def test_which_kinds_each_format_expresses() -> None:
    can = {f: sorted(k for k, e in KINDS.items() if e.kind in formats.SPECS[f].kinds)
           for f in formats.FORMATS}  # fmt: skip
    assert can == {
        "agentscope": ["ollama", "openai", "post"],
        "modelscope-agent": ["openai"],
        "agentfabric": ["openai"],
        "agentscope-v1": ["ollama", "openai"],
        "agentscope-v2": ["ollama", "openai"],
        "openai-env": ["openai"],
        **{f: ["openai"] for f in ("anthropic-env", "codex", "openai-agents", "agentscope-v1-anthropic",
                                   "agentscope-v1-responses", "agentscope-v2-anthropic", "agentscope-v2-responses")},
    }


def test_ollama_endpoint_never_carries_a_key() -> None:
    # Ollama has no auth: a key on the endpoint changes nothing in any format.
    for fmt in ("agentscope", "agentscope-v1", "agentscope-v2"):
        assert render(fmt, keyed(OLLAMA)).text == render(fmt, OLLAMA).text
        assert "s3cret" not in render(fmt, keyed(OLLAMA)).text


def test_agentscope_is_exactly_what_up_writes() -> None:
    rendered = render("agentscope", POST, OPENAI, settings=GREEDY)
    expected = agentscope.agentscope_entries([POST, OPENAI], GREEDY, "smol")
    assert list(rendered.entries) == expected
    assert json.loads(rendered.text) == expected
    assert rendered.notes == ()


def test_modelscope_agent_dict_has_exactly_the_documented_keys() -> None:
    config = json.loads(render("modelscope-agent", OPENAI).text)
    assert config == {"model_server": "openai", "model": "smollm2-135m", "api_base": "http://127.0.0.1:8000/v1",
                      "api_key": "EMPTY", "is_chat": True, "is_function_call": False}  # fmt: skip


def test_agentfabric_entry_is_the_llm_config_under_type() -> None:
    rendered = render("agentfabric", keyed(OPENAI))
    entry = dict(rendered.named["smol-openai"])
    # AgentFabric does llm_config["model_server"] = llm_config.pop("type"): the same dict results.
    as_llm_config = {"model_server": entry.pop("type"), **entry}
    assert as_llm_config == {**formats.llm_config(keyed(OPENAI)), "support_stream": False}
    assert json.loads(rendered.text) == rendered.named


def test_the_served_name_is_sent_never_a_gpt_name() -> None:
    for fmt in formats.FORMATS:
        for endpoint in KINDS.values():
            if endpoint.kind in formats.SPECS[fmt].kinds:
                text = render(fmt, endpoint).text
                assert "gpt-" not in text
                assert endpoint.model_name in text or fmt == "openai-env"  # env lines carry no model


@pytest.mark.parametrize("fmt", ["agentscope-v1", "agentscope-v2", "openai-agents", "agentscope-v1-anthropic",
                                 "agentscope-v1-responses", "agentscope-v2-anthropic", "agentscope-v2-responses"])
def test_snippets_are_valid_python(fmt: str) -> None:
    for endpoint in (OPENAI, keyed(OPENAI, 'we"ird\\key'), OLLAMA):
        if endpoint.kind in formats.SPECS[fmt].kinds:  # type: ignore[index]
            compile(render(fmt, endpoint).text, f"<{fmt}>", "exec")


def test_codex_config_is_toml_with_a_responses_provider_and_no_key() -> None:
    import tomllib

    config = tomllib.loads(render("codex", keyed(OPENAI)).text)
    provider = config["model_providers"][config["model_provider"]]
    assert config["model"] == "smollm2-135m" and provider["base_url"] == "http://127.0.0.1:8000/v1"
    assert provider["wire_api"] == "responses" and provider["env_key"] == "MODELSERVE_API_KEY"
    assert config["model_provider"] not in ("openai", "ollama", "lmstudio")  # Codex's own provider ids
    assert "env_key" not in tomllib.loads(render("codex", OPENAI).text)["model_providers"]["modelserve-smol"]


def test_anthropic_env_points_at_the_servers_root() -> None:
    lines = dict(line.split("=", 1) for line in render("anthropic-env", keyed(OPENAI)).text.splitlines())
    assert lines["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:8000"  # the SDKs add /v1/messages themselves
    assert lines["ANTHROPIC_AUTH_TOKEN"] == "s3cret" and lines["ANTHROPIC_MODEL"] == "smollm2-135m"


def test_env_lines_are_shell_quoted() -> None:
    odd = ClientEndpoint("openai_chat", "http://127.0.0.1:8000/v1", "m", "a b'$c")
    lines = render("openai-env", odd).text.splitlines()
    assert [shlex.split(line) for line in lines] == [["OPENAI_BASE_URL=http://127.0.0.1:8000/v1"],
                                                      ["OPENAI_API_KEY=a b'$c"]]  # fmt: skip


def test_flask_deployment_leaves_post_out_with_a_note() -> None:
    rendered = render("modelscope-agent", POST, OPENAI)
    assert rendered.endpoints == (OPENAI,)
    assert rendered.notes[0] == ("left out the POST /llm/ endpoint http://127.0.0.1:8000/llm/: ModelScope-Agent: "
                                 "it has no client for the AgentScope POST /llm/ envelope")  # fmt: skip


def test_modelscope_formats_warn_that_it_logs_the_key() -> None:
    warning = "ModelScope-Agent 0.7.2 writes the API key into logs/info.log under the working folder"
    for fmt in ("modelscope-agent", "agentfabric"):
        assert warning in render(fmt, keyed(OPENAI)).notes
        assert warning not in render(fmt, OPENAI).notes


def test_ollama_deployment_snippet_prefers_the_native_client_and_says_how_to_get_the_other() -> None:
    rendered = render("agentscope-v1", OLLAMA_V1, OLLAMA)
    assert rendered.endpoints == (OLLAMA,)
    assert rendered.notes == ("rendered the native Ollama endpoint; for the OpenAI-compatible one "
                              "(http://127.0.0.1:11434/v1) pass --endpoint openai",)  # fmt: skip
    assert render("agentscope-v1", OLLAMA_V1, OLLAMA, only="openai").endpoints == (OLLAMA_V1,)
    # Named-entry formats take every endpoint they can express.
    assert [e["model_type"] for e in render("agentscope", OLLAMA, OLLAMA_V1).entries] == ["ollama_chat", "openai_chat"]


def test_nothing_to_render_is_an_error_with_the_fix() -> None:
    with pytest.raises(ClientConfigError) as err:
        render("openai-env", POST)
    assert str(err.value) == (
        "--format openai-env cannot express any endpoint of 'smol': left out the POST /llm/ endpoint "
        "http://127.0.0.1:8000/llm/: OPENAI_BASE_URL cannot point at a POST /llm/ server\n"
        "  fix: use --format agentscope")
    with pytest.raises(ClientConfigError, match="has no ollama endpoint \\(it has: post, openai\\)"):
        render("agentscope", POST, OPENAI, only="ollama")
    with pytest.raises(ClientConfigError, match="no client endpoints in its record"):
        render("agentscope")
    with pytest.raises(ClientConfigError) as excluded:
        render("modelscope-agent", POST, OPENAI, only="post")
    assert excluded.value.hint == "pass --endpoint openai or leave --endpoint out, or use --format agentscope"


def test_entry_base_recovers_the_prefix_up_used() -> None:
    assert formats.entry_base("smollm2-135m", ["demo-post", "demo-openai"]) == "demo"
    assert formats.entry_base("smollm2-135m", []) == "smollm2-135m"
    assert formats.entry_base("d", ["my-own-name"]) == "d"
    assert formats.SUFFIX == agentscope.SUFFIX


# ---- merge_object: AgentFabric's file, keyed by name ------------------------------------------


def entry(model: str) -> dict[str, object]:
    return {"type": "openai", "model": model, "api_base": "http://127.0.0.1:8000/v1", "is_chat": True}


def test_merge_object_keeps_others_and_replaces_same_name_in_place(tmp_path: Path) -> None:
    path = tmp_path / "model_config.json"
    theirs = {"qwen-max": {"type": "dashscope", "model": "qwen-max", "length_constraint": {"knowledge": 4000}}}
    path.write_text(json.dumps({**theirs, "local": entry("a"), "last": entry("z")}, indent=4))
    merged = config_files.merge_object(path, {"local": entry("b"), "new": entry("c")})
    data = json.loads(path.read_text())
    assert data == merged
    assert list(data) == ["qwen-max", "local", "last", "new"]
    assert data["qwen-max"] == theirs["qwen-max"]
    assert data["local"]["model"] == "b"


def test_merge_object_creates_the_file_and_treats_empty_as_no_entries(tmp_path: Path) -> None:
    config_files.merge_object(tmp_path / "a.json", {"x": entry("x")})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": entry("x")}
    (tmp_path / "b.json").write_text("\n \n")
    config_files.merge_object(tmp_path / "b.json", {"y": entry("y")})
    assert json.loads((tmp_path / "b.json").read_text()) == {"y": entry("y")}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{\n  "a": {"type": "openai"},\n  "b": {"type": "openai",}\n}\n', r"model_config.json:3:26: not valid JSON"),
        ('[{"config_name": "a", "model_type": "openai_chat"}]', r"holds a JSON list \(AgentScope model configs\?\)"),
        ('"text"', "holds JSON str, not an object keyed by model name"),
        ('{"a": {"type": "openai"}, "b": 3}', "'b' is not a model entry"),
    ],
)
def test_merge_object_never_touches_a_malformed_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "model_config.json"
    path.write_text(content)
    before = path.stat().st_mtime_ns
    with pytest.raises(ClientConfigError, match=message) as err:
        config_files.merge_object(path, {"x": entry("x")})
    assert err.value.exit_code == 9
    assert path.read_text() == content
    assert path.stat().st_mtime_ns == before
    assert sorted(os.listdir(tmp_path)) == ["model_config.json"]  # no temp file left behind


def test_merge_object_keeps_the_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "model_config.json"
    path.write_text("{}")
    path.chmod(0o640)
    config_files.merge_object(path, {"x": entry("x")})
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def _object_writer(path: str, i: int, barrier: multiprocessing.synchronize.Barrier) -> None:
    barrier.wait()  # all 20 start their read-modify-write at the same moment
    config_files.merge_object(Path(path), {f"w{i}": entry(f"m{i}")})


def test_twenty_concurrent_object_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "model_config.json"
    path.write_text(json.dumps({"existing": entry("e")}))
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(20)
    procs = [ctx.Process(target=_object_writer, args=(str(path), i, barrier)) for i in range(20)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    data = json.loads(path.read_text())
    assert sorted(data) == sorted(["existing"] + [f"w{i}" for i in range(20)])
    assert all(data[f"w{i}"]["model"] == f"m{i}" for i in range(20))


def test_write_new_never_replaces_a_file(tmp_path: Path) -> None:
    path = tmp_path / "model.py"
    assert config_files.write_new(path, "a = 1\n", mode=0o600) is True
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert config_files.write_new(path, "a = 1\n") is False  # the same text: nothing to do
    with pytest.raises(ClientConfigError, match="exists and this format cannot be merged"):
        config_files.write_new(path, "a = 2\n")
    assert path.read_text() == "a = 1\n"
    assert sorted(os.listdir(tmp_path)) == ["model.py"]


# ---- the command -----------------------------------------------------------------------------


def save_record(name: str, *endpoints: ClientEndpoint, written: list[str] | None = None,
                status: str = "ready", agentscope: dict[str, object] | None = None) -> None:  # fmt: skip
    from dataclasses import asdict

    record = records.DeploymentRecord(
        name=name, backend="flask-transformers", api="post", model="smollm2-135m", model_path="/m",
        served_model_name="smollm2-135m", host="127.0.0.1", port=8000, base_url="http://127.0.0.1:8000",
        endpoints={}, marker="x", started_at=0, log_dir="/l", status=status,
        client_endpoints=[asdict(e) for e in endpoints],
        clients=[records.ClientRecord("agentscope", "/x/model_config.json", written)] if written else [],
        agentscope=agentscope or {},
    )  # fmt: skip
    records.save(record)


def invoke(*args: str) -> Result:
    # The group converts ModelserveError into "error: ..." and its exit code, as `modelserve` does.
    group = ModelserveGroup(name="modelserve", commands={"config": config_command})
    return CliRunner().invoke(group, ["config", *args])


def test_cli_prints_each_format_and_notes_on_stderr() -> None:
    save_record("smol", POST, OPENAI)
    for fmt in formats.FORMATS:
        result = invoke("smol", "--format", fmt, "--temperature", "0", "--max-tokens", "48", "--request-timeout", "60")
        assert result.exit_code == 0, result.output
        assert result.stdout == render(fmt, POST, OPENAI, settings=GREEDY).text
    notes = invoke("smol", "-f", "openai-env").stderr
    assert notes == ("note: left out the POST /llm/ endpoint http://127.0.0.1:8000/llm/: OPENAI_BASE_URL cannot "
                     'point at a POST /llm/ server\nnote: clients must send "model": "smollm2-135m" (the served name)\n')  # fmt: skip


def test_cli_uses_the_entry_names_up_wrote() -> None:
    save_record("smollm2-135m", POST, OPENAI, written=["demo-post", "demo-openai"])
    entries = json.loads(invoke("smollm2-135m", "-f", "agentscope").stdout)
    assert [e["config_name"] for e in entries] == ["demo-post", "demo-openai"]
    named = json.loads(invoke("smollm2-135m", "-f", "agentfabric", "--config-name", "mine").stdout)
    assert list(named) == ["mine-openai"]


def test_cli_write_agentscope_merges(tmp_path: Path) -> None:
    save_record("smol", POST, OPENAI)
    path = tmp_path / "model_config.json"
    theirs = {"config_name": "gpt4", "model_type": "openai_chat", "model_name": "gpt-4", "api_key": "sk-x"}
    path.write_text(json.dumps([theirs]))
    result = invoke("smol", "-f", "agentscope", "--write", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"merged smol-post, smol-openai into {path} (1 other entries kept)\n"
    data = json.loads(path.read_text())
    assert data == [theirs, *agentscope.agentscope_entries([POST, OPENAI], AgentScopeSettings(), "smol")]


def test_cli_write_agentfabric_merges_and_refuses_a_malformed_file(tmp_path: Path) -> None:
    save_record("smol", POST, OPENAI)
    path = tmp_path / "model_config.json"
    path.write_text(json.dumps({"qwen-max": {"type": "dashscope", "model": "qwen-max"}}))
    assert invoke("smol", "-f", "agentfabric", "-w", str(path)).exit_code == 0
    assert list(json.loads(path.read_text())) == ["qwen-max", "smol-openai"]
    path.write_text('{"qwen-max": {"type": "dashscope"}\n')
    result = invoke("smol", "-f", "agentfabric", "-w", str(path))
    assert result.exit_code == 9
    assert f"error: {path}:2:1: not valid JSON" in result.stderr
    assert path.read_text() == '{"qwen-max": {"type": "dashscope"}\n'


def test_cli_write_snippet_only_to_a_new_file(tmp_path: Path) -> None:
    save_record("smol", keyed(POST), keyed(OPENAI))
    path = tmp_path / "model.py"
    first = invoke("smol", "-f", "agentscope-v2", "--write", str(path))
    assert first.exit_code == 0, first.output
    assert first.stdout == f"wrote {path}\n"
    assert path.read_text() == render("agentscope-v2", keyed(OPENAI)).text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # it holds the API key
    assert invoke("smol", "-f", "agentscope-v2", "--write", str(path)).stdout == (
        f"{path} already holds this config; left as is\n")
    other = invoke("smol", "-f", "agentscope-v2", "--write", str(path), "--temperature", "0")
    assert other.exit_code == 9
    assert other.stderr.splitlines()[-2:] == [
        f"error: {path} exists and this format cannot be merged into a file; it was left untouched",
        "  fix: choose a new --write path, or delete the file first",
    ]
    assert path.read_text() == render("agentscope-v2", keyed(OPENAI)).text


def test_cli_errors_name_the_fix(tmp_path: Path) -> None:
    missing = invoke("nope", "-f", "agentscope")
    assert missing.exit_code == 10
    assert missing.stderr == "error: no deployment named 'nope'\n  fix: start one with `modelserve up -m MODEL`\n"
    save_record("postonly", POST)
    result = invoke("postonly", "-f", "modelscope-agent")
    assert result.exit_code == 9
    assert result.stderr.endswith("  fix: use --format agentscope\n")
    nowhere = invoke("postonly", "-f", "agentscope", "-w", str(tmp_path / "no" / "such.json"))
    assert nowhere.exit_code == 9
    assert f"the folder {tmp_path / 'no'} does not exist" in nowhere.stderr
    assert invoke("postonly", "-f", "xml").exit_code == 2  # click rejects an unknown format
    assert invoke("postonly", "-f", "agentscope", "--temperature", "3").exit_code == 2


def test_cli_says_when_the_deployment_is_not_ready() -> None:
    save_record("smol", OPENAI, status="starting")
    result = invoke("smol", "-f", "openai-env")
    assert result.exit_code == 0
    assert result.stderr.startswith("note: deployment 'smol' is starting, not ready yet\n")


def test_cli_help_has_examples() -> None:
    text = CliRunner().invoke(config_command, ["--help"]).output
    assert "modelserve config smollm2-135m -f agentscope --write ./model_config.json" in text
    for fmt in formats.FORMATS:
        assert fmt in text


def test_cli_defaults_to_the_settings_up_wrote_with() -> None:
    save_record("smol", POST, OPENAI, agentscope={"temperature": 0.0, "max_tokens": 64, "request_timeout": 30.0})
    entries = json.loads(invoke("smol", "-f", "agentscope").stdout)
    assert entries[0]["json_args"] == {"max_new_tokens": 64, "do_sample": False}
    assert entries[1]["generate_args"] == {"max_tokens": 64, "temperature": 0.0}
    flagged = json.loads(invoke("smol", "-f", "agentscope", "--max-tokens", "8").stdout)
    assert flagged[1]["generate_args"]["max_tokens"] == 8  # a flag still wins


def test_written_entries_are_forgotten_by_down(tmp_path: Path) -> None:
    from launcher.lifecycle import down as stopping

    save_record("smol", POST, OPENAI)
    scope, fabric = tmp_path / "model_config.json", tmp_path / "fabric.json"
    fabric.write_text(json.dumps({"qwen-max": {"type": "dashscope"}}))
    assert invoke("smol", "-f", "agentscope", "-w", str(scope)).exit_code == 0
    assert invoke("smol", "-f", "agentfabric", "-w", str(fabric)).exit_code == 0
    assert {c.kind for c in records.load("smol").clients} == {"agentscope", "agentfabric"}
    (result,) = stopping.down(["smol"], forget_config=True)
    assert result.forgot == 3  # smol-post + smol-openai, and the AgentFabric entry
    assert json.loads(scope.read_text()) == []
    assert json.loads(fabric.read_text()) == {"qwen-max": {"type": "dashscope"}}


def test_write_errors_name_the_write_option(tmp_path: Path) -> None:
    save_record("smol", POST, OPENAI)
    path = tmp_path / "model_config.json"
    path.write_text("[{,]")
    result = invoke("smol", "-f", "agentscope", "-w", str(path))
    assert result.exit_code == 9 and "point --write at another file" in result.stderr


def test_a_deployment_that_cannot_call_tools_says_so_in_its_configs() -> None:
    from launcher.store import records as store

    save_record("fc", OPENAI)
    record = store.load("fc")
    record.tools = "not supported: FastChat's OpenAI API server has no tool calling"
    store.save(record)
    snippet = invoke("fc", "-f", "agentscope-v1")
    assert snippet.exit_code == 0, snippet.output
    assert "# Note: this deployment cannot call tools: not supported: FastChat" in snippet.stdout
    entries = invoke("fc", "-f", "agentscope")
    assert "note: this deployment cannot call tools" in entries.stderr
