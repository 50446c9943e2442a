from __future__ import annotations

from pathlib import Path

import pytest

from launcher import models
from launcher.core.errors import ModelNotFound


def hf_snapshot(cache: Path, model_id: str, commit: str = "abc123") -> Path:
    repo = cache / ("models--" + model_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snap


def test_local_folder(tmp_path: Path) -> None:
    folder = tmp_path / "My-Model"
    folder.mkdir()
    found = models.resolve(str(folder), prepare=False)
    assert (found.kind, found.path, found.served_name) == ("local", str(folder), "My-Model")


def test_relative_folder_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "m").mkdir()
    monkeypatch.chdir(tmp_path)
    assert models.resolve("./m", prepare=False).path == str(tmp_path / "m")


def test_hf_cache_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    snap = hf_snapshot(tmp_path / "hub", "meta-llama/Llama-2-7b-chat-hf")
    found = models.resolve("meta-llama/Llama-2-7b-chat-hf", prepare=False)
    assert (found.kind, found.path) == ("hf-cache", str(snap))
    assert found.served_name == "meta-llama/Llama-2-7b-chat-hf"  # what vLLM would call it too


def test_hf_home_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    snap = hf_snapshot(tmp_path / "hf" / "hub", "org/name")
    assert models.resolve("org/name", prepare=False).path == str(snap)


def test_modelscope_cache_both_layouts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "ms"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    new = tmp_path / "ms" / "models" / "qwen" / "Qwen2___5-0___5B-Instruct"  # '.' is written as '___'
    new.mkdir(parents=True)
    (new / "config.json").write_text("{}")
    old = tmp_path / "ms" / "ZhipuAI" / "chatglm3-6b"
    old.mkdir(parents=True)
    (old / "config.json").write_text("{}")
    assert models.resolve("qwen/Qwen2.5-0.5B-Instruct", prepare=False).path == str(new)
    found = models.resolve("ZhipuAI/chatglm3-6b", prepare=False)
    assert (found.kind, found.path) == ("modelscope-cache", str(old))


def test_uncached_id_goes_to_the_engine_when_it_can_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "b"))
    found = models.resolve("org/never-seen", prepare=False)
    assert (found.kind, found.path, found.engine_ref) == ("remote", None, "org/never-seen")
    with pytest.raises(ModelNotFound, match="cannot download it") as err:
        models.resolve("org/never-seen", prepare=False, engine_downloads=False)
    assert "huggingface-cli download org/never-seen" in str(err.value)


@pytest.mark.parametrize("ref", ["./typo-folder", "/nope/model", "~/nowhere", "just-a-word"])
def test_missing_paths_fail_at_once(ref: str) -> None:
    with pytest.raises(ModelNotFound) as err:
        models.resolve(ref, prepare=False)
    assert err.value.exit_code == 4
    assert "smollm2-135m" in str(err.value)  # the message offers the alias


def test_alias_without_prepare_names_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSERVE_CACHE", str(tmp_path / "cache"))
    found = models.resolve("smollm2-135m", prepare=False)
    assert found.kind == "alias" and found.path == str(tmp_path / "cache" / "models" / "smollm2-135m")
    assert "to be converted" in found.description
