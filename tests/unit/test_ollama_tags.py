"""What `-m` means for the Ollama backend: the HF ID table, tags passed through, GGUF files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from backends.ollama.backend import (
    HF_ID_RE,
    TAG_RE,
    OllamaBackend,
    TagTable,
    canonical,
    gguf_tag,
    has_model,
    load_tag_table,
    model_source,
)
from launcher.core import resources
from launcher.core.deployment import Deployment
from launcher.core.errors import ConfigError, ModelNotFound
from tests.ollama_standin.harness import write_gguf


def test_hugging_face_ids_map_to_library_tags() -> None:
    assert model_source("meta-llama/Llama-2-7b-chat-hf").tag == "llama2:7b-chat"
    assert model_source("Qwen/Qwen2.5-0.5B-Instruct").tag == "qwen2.5:0.5b"
    assert model_source("HuggingFaceTB/SmolLM2-135M-Instruct").tag == "smollm2:135m"
    # Hugging Face IDs are matched without regard to case.
    assert model_source("qwen/qwen2.5-0.5b-instruct").tag == "qwen2.5:0.5b"
    src = model_source("google/gemma-2-2b-it")
    assert (src.tag, src.gguf) == ("gemma2:2b", None)
    assert "ollama-tags.yaml" in src.description


@pytest.mark.parametrize("tag", ["qwen2.5:0.5b", "llama2", "llama3.2:1b", "mattw/pygmalion:latest",
                                 "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", "tinyllama"])  # fmt: skip
def test_ollama_tags_pass_through(tag: str) -> None:
    src = model_source(tag)
    assert (src.tag, src.gguf) == (tag, None)


def test_the_built_in_alias_names_the_same_model_in_ollama() -> None:
    assert model_source("smollm2-135m").tag == "smollm2:135m"


def test_an_unknown_hugging_face_id_says_to_pass_an_ollama_tag() -> None:
    with pytest.raises(ModelNotFound) as err:
        model_source("someone/Some-Model-7B")
    assert err.value.exit_code == 4
    message = str(err.value)
    assert "'someone/Some-Model-7B' looks like a Hugging Face ID" in message
    assert "pass an Ollama tag instead (e.g. -m qwen2.5:0.5b" in message
    assert "NAMESPACE/MODEL:TAG" in message and "-m ./model.gguf" in message and "ollama-tags.yaml" in message


def test_a_gguf_file_is_created_under_a_name_from_its_file(tmp_path: Path) -> None:
    gguf = write_gguf(tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf")
    src = model_source(str(gguf))
    assert (src.tag, src.gguf) == ("smollm2-135m-instruct.q4_1", gguf.resolve())
    assert gguf_tag(Path("/x/My Model (v2).GGUF")) == "my-model-v2"


def test_paths_that_are_not_gguf_files_fail_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights.bin").write_bytes(b"\0" * 16)
    (tmp_path / "hf-folder").mkdir()
    with pytest.raises(ModelNotFound, match="is a file but not a GGUF model"):
        model_source("./weights.bin")
    with pytest.raises(ModelNotFound, match="is a folder; the ollama backend serves Ollama tags and GGUF files"):
        model_source("./hf-folder")
    with pytest.raises(ModelNotFound, match=re.escape(f"'./typo.gguf' does not exist (resolved from {tmp_path})")):
        model_source("./typo.gguf")


def test_resolve_model_reports_tag_and_source(tmp_path: Path) -> None:
    backend = OllamaBackend()
    remote = backend.resolve_model(Deployment(model="meta-llama/Llama-2-7b-chat-hf"), prepare=False, progress=print)
    assert (remote.kind, remote.path, remote.served_name) == ("remote", None, "llama2:7b-chat")
    assert "pulled from the Ollama library if missing" in remote.description
    gguf = write_gguf(tmp_path / "tiny.gguf")
    local = backend.resolve_model(Deployment(model=str(gguf)), prepare=False, progress=print)
    assert (local.kind, local.path, local.served_name) == ("local", str(gguf), "tiny")


def test_names_compare_the_way_ollama_lists_them() -> None:
    assert canonical("llama2") == "llama2:latest"
    assert canonical("library/Qwen2.5:0.5B") == "qwen2.5:0.5b"
    assert has_model(["llama2:latest", "qwen2.5:0.5b"], "llama2")
    assert has_model(["mattw/pygmalion:latest"], "mattw/pygmalion")
    assert not has_model(["llama2:latest"], "llama2:13b-chat")


def test_the_shipped_table_is_well_formed() -> None:
    path = resources.config_path("ollama-tags.yaml")
    raw = yaml.safe_load(path.read_text())
    table = load_tag_table()
    assert len(table.models) >= 12 and table.models == raw["models"]
    for hf_id, tag in table.models.items():
        assert HF_ID_RE.match(hf_id), hf_id
        assert TAG_RE.match(tag) and "/" not in tag, tag  # library tags
    lowered = [k.lower() for k in table.models]
    assert len(lowered) == len(set(lowered)), "an ID listed twice (lookups ignore case)"


def test_a_broken_table_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "tags.yaml"
    bad.write_text("models:\n  org/name: [not, a, tag]\n")
    with pytest.raises(ConfigError, match="models must map names to Ollama tags"):
        load_tag_table(bad)
    assert TagTable({"Org/Name": "x:1b"}).lookup("org/name") == "x:1b"
