from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import pytest

from launcher.agents import agentscope, config_files
from launcher.core.deployment import AgentScopeSettings
from launcher.core.errors import ClientConfigError
from launcher.core.launch import ClientEndpoint
from tests.golden import assert_golden

POST = ClientEndpoint("post_api_chat", "http://127.0.0.1:8000/llm/", "smollm2-135m")
OPENAI = ClientEndpoint("openai_chat", "http://127.0.0.1:8000/v1", "smollm2-135m")
OLLAMA = ClientEndpoint("ollama_chat", "http://127.0.0.1:11434", "llama2:7b-chat")


def dump(entries: list[dict]) -> str:
    return json.dumps(entries, indent=2) + "\n"


def test_agentscope_entries_golden() -> None:
    entries = agentscope.agentscope_entries([POST, OPENAI], AgentScopeSettings(), "smol")
    assert_golden("agentscope/flask.json", dump(entries))


def test_agentscope_entries_with_key_and_greedy_golden() -> None:
    keyed = [ClientEndpoint(e.kind, e.url, e.model_name, "s3cret") for e in (POST, OPENAI)]
    settings = AgentScopeSettings(temperature=0, max_tokens=64, request_timeout=30)
    assert_golden("agentscope/flask-key-greedy.json", dump(agentscope.agentscope_entries(keyed, settings, "smol")))


def test_ollama_entry_has_only_keys_the_wrapper_accepts() -> None:
    entry = agentscope.agentscope_entry(OLLAMA, AgentScopeSettings(), "llama")
    # Any other key reaches ollama.Client(**kwargs) and raises TypeError in AgentScope 0.1.6.
    assert set(entry) == {"config_name", "model_type", "model_name", "options", "keep_alive", "host"}


def test_post_entry_json_args_are_generate_kwargs_only() -> None:
    entry = agentscope.agentscope_entry(POST, AgentScopeSettings(), "x")
    assert set(entry["json_args"]) <= {"max_new_tokens", "temperature", "do_sample", "top_p", "max_length"}
    assert entry["model_name"] == "smollm2-135m"  # required by AgentScope >= 0.1.2


def test_merge_creates_keeps_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "model_config.json"
    theirs = {"config_name": "gpt4", "model_type": "openai_chat", "model_name": "gpt-4", "api_key": "sk-x"}
    path.write_text(json.dumps([theirs]))
    first = agentscope.agentscope_entries([POST, OPENAI], AgentScopeSettings(), "smol")
    config_files.merge(path, first)
    again = agentscope.agentscope_entries([POST, OPENAI], AgentScopeSettings(max_tokens=7), "smol")
    config_files.merge(path, again)
    data = json.loads(path.read_text())
    assert [e["config_name"] for e in data] == ["gpt4", "smol-post", "smol-openai"]
    assert data[0] == theirs
    assert data[1]["json_args"]["max_new_tokens"] == 7  # replaced in place, not duplicated


def test_single_object_file_becomes_a_list_keeping_it(tmp_path: Path) -> None:
    path = tmp_path / "model_config.json"
    single = {"config_name": "vllm_llama2", "model_type": "openai_chat", "model_name": "m"}
    path.write_text(json.dumps(single))
    config_files.merge(path, agentscope.agentscope_entries([OPENAI], AgentScopeSettings(), "a"))
    assert json.loads(path.read_text())[0] == single


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"config_name": "a",}]', r"model_config.json:1:22: not valid JSON"),
        ('{"not": "a config"}', "not an AgentScope model config"),
        ('"text"', "holds JSON str"),
        ('[{"config_name": "a"}, 3]', "element 1 is not a model config"),
    ],
)
def test_malformed_file_is_never_touched(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "model_config.json"
    path.write_text(content)
    before = path.stat().st_mtime_ns
    with pytest.raises(ClientConfigError, match=message) as err:
        config_files.merge(path, agentscope.agentscope_entries([POST], AgentScopeSettings(), "x"))
    assert err.value.exit_code == 9
    assert path.read_text() == content
    assert path.stat().st_mtime_ns == before
    assert sorted(os.listdir(tmp_path)) == ["model_config.json"]  # no temp file left behind


def test_check_mergeable_reports_line(tmp_path: Path) -> None:
    path = tmp_path / "model_config.json"
    path.write_text('[\n  {"config_name": "a"}\n  {"config_name": "b"}\n]\n')
    with pytest.raises(ClientConfigError, match=r"model_config.json:3:3: not valid JSON"):
        config_files.check_mergeable(path)


def test_empty_file_counts_as_no_entries(tmp_path: Path) -> None:
    path = tmp_path / "model_config.json"
    path.write_text("  \n")
    config_files.merge(path, agentscope.agentscope_entries([POST], AgentScopeSettings(), "x"))
    assert [e["config_name"] for e in json.loads(path.read_text())] == ["x-post"]


def test_remove_entries(tmp_path: Path) -> None:
    path = tmp_path / "model_config.json"
    keep = {"config_name": "keep", "model_type": "openai_chat"}
    path.write_text(json.dumps([keep]))
    config_files.merge(path, agentscope.agentscope_entries([POST, OPENAI], AgentScopeSettings(), "x"))
    assert config_files.remove_entries(path, ["x-post", "x-openai"]) == 2
    assert json.loads(path.read_text()) == [keep]
    assert config_files.remove_entries(tmp_path / "absent.json", ["x"]) == 0


def test_file_mode_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "model_config.json"
    path.write_text("[]")
    path.chmod(0o640)
    config_files.merge(path, agentscope.agentscope_entries([POST], AgentScopeSettings(), "x"))
    assert path.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize(("before", "key", "after"), [
    (None, "s3cret", 0o600),  # a new file with a key: the owner's only
    (0o644, "s3cret", 0o600),  # round one wrote keys into 0644 files: a merge narrows it
    (0o640, "s3cret", 0o600),
    (0o600, None, 0o600),  # a private file stays private
    (0o640, None, 0o640),  # no key: the owner's mode stays
    (None, None, 0o644),
])  # fmt: skip
def test_a_file_holding_a_key_is_0600_and_a_merge_never_widens_it(tmp_path: Path, before: int | None,
                                                                  key: str | None, after: int) -> None:  # fmt: skip
    path = tmp_path / "model_config.json"
    if before is not None:
        path.write_text("[]")
        path.chmod(before)
    post = ClientEndpoint("post_api_chat", POST.url, POST.model_name, key)
    openai = ClientEndpoint("openai_chat", OPENAI.url, OPENAI.model_name, key)
    config_files.merge(path, agentscope.agentscope_entries([post, openai], AgentScopeSettings(), "x"))
    assert path.stat().st_mode & 0o777 == after
    assert config_files.holds_secret(json.loads(path.read_text())) == (key is not None)


def _writer(path: str, i: int, barrier: multiprocessing.synchronize.Barrier) -> None:
    barrier.wait()  # all 20 start their read-modify-write at the same moment
    ep = ClientEndpoint("openai_chat", f"http://127.0.0.1:{9000 + i}/v1", f"m{i}")
    config_files.merge(Path(path), agentscope.agentscope_entries([ep], AgentScopeSettings(), f"w{i}"))


def test_twenty_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "model_config.json"
    path.write_text(json.dumps([{"config_name": "existing", "model_type": "openai_chat"}]))
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(20)
    procs = [ctx.Process(target=_writer, args=(str(path), i, barrier)) for i in range(20)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    names = sorted(e["config_name"] for e in json.loads(path.read_text()))
    assert names == sorted(["existing"] + [f"w{i}-openai" for i in range(20)])
