"""The Ollama stand-in answers the way Ollama's docs say Ollama does (the tests of modelserve's
Ollama backend are only as good as this)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.process import ports
from tests.ollama_standin.harness import (
    STANDIN,
    get_json,
    post_json,
    post_ndjson,
    running_standin,
    standin_servers,
    write_gguf,
)


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[str]:
    port = ports.free_port()
    with running_standin(port, tmp_path / "models", tmp_path / "standin.log"):
        yield f"http://127.0.0.1:{port}"


def http_error(url: str, body: dict[str, object] | None = None, method: str = "POST") -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    return err.value.code, json.loads(err.value.read())


def test_version_root_and_an_empty_store(server: str) -> None:
    assert get_json(server + "/api/version") == {"version": "0.14.0"}
    with urllib.request.urlopen(server + "/", timeout=5) as resp:
        assert resp.read() == b"Ollama is running"
    assert get_json(server + "/api/tags") == {"models": []}
    assert get_json(server + "/v1/models") == {"object": "list", "data": []}


def test_pull_streams_progress_then_the_model_is_listed(server: str, tmp_path: Path) -> None:
    events = post_ndjson(server + "/api/pull", {"model": "qwen2.5:0.5b"})
    assert events[0] == {"status": "pulling manifest"}
    assert [e["status"] for e in events[-4:]] == ["verifying sha256 digest", "writing manifest",
                                                 "removing any unused layers", "success"]  # fmt: skip
    layers = [e for e in events if "digest" in e]
    first = layers[0]
    assert "completed" not in first and first["status"] == f"pulling {first['digest'][7:19]}"
    assert layers[1]["completed"] < first["total"] and any(e.get("completed") == first["total"] for e in layers)
    assert len({e["digest"] for e in layers}) == 4  # model, template, system, license

    (model,) = get_json(server + "/api/tags")["models"]
    assert model["name"] == model["model"] == "qwen2.5:0.5b"
    assert model["details"] == {"parent_model": "", "format": "gguf", "family": "qwen2", "families": ["qwen2"],
                                "parameter_size": "494.03M", "quantization_level": "Q4_K_M"}  # fmt: skip
    assert len(model["digest"]) == 64 and model["size"] > 397_000_000
    # Kept like Ollama's store, under OLLAMA_MODELS.
    manifest = tmp_path / "models" / "manifests" / "registry.ollama.ai" / "library" / "qwen2.5" / "0.5b"
    assert json.loads(manifest.read_text())["schemaVersion"] == 2
    assert post_json(server + "/api/pull", {"model": "qwen2.5:0.5b", "stream": False}) == {"status": "success"}


def test_unknown_tag_fails_the_way_ollama_does(server: str) -> None:
    events = post_ndjson(server + "/api/pull", {"model": "no-such-model:1b"})
    assert events == [{"status": "pulling manifest"}, {"error": "pull model manifest: file does not exist"}]
    assert http_error(server + "/api/pull", {"model": "no-such-model:1b", "stream": False}) == (
        500, {"error": "pull model manifest: file does not exist"})
    assert http_error(server + "/api/chat", {"model": "llama2", "messages": []}) == (
        404, {"error": 'model "llama2" not found, try pulling it first'})
    code, body = http_error(server + "/v1/chat/completions", {"model": "llama2", "messages": [
        {"role": "user", "content": "hi"}]})  # fmt: skip
    assert code == 404 and body == {"error": {"message": 'model "llama2" not found, try pulling it first',
                                              "type": "not_found_error", "param": None, "code": None}}  # fmt: skip


def test_chat_generate_and_the_openai_api_answer_from_the_request(server: str) -> None:
    post_json(server + "/api/pull", {"model": "llama2", "stream": False})
    question = "What is the capital of France?"
    chat = post_json(server + "/api/chat", {"model": "llama2", "stream": False, "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": question}]})  # fmt: skip
    assert chat["message"] == {"role": "assistant", "content": f"Stand-in reply from llama2:latest: {question}"}
    assert (chat["done"], chat["done_reason"], chat["eval_count"], chat["prompt_eval_count"]) == (True, "stop", 10, 8)
    assert all(isinstance(chat[k], int) for k in ("total_duration", "load_duration", "eval_duration"))

    pieces = post_ndjson(server + "/api/chat", {"model": "llama2", "messages": [{"role": "user", "content": question}],
                                                "options": {"num_predict": 5}})  # fmt: skip
    assert [p["done"] for p in pieces] == [False] * 5 + [True]
    assert "".join(p["message"]["content"] for p in pieces) == "Stand-in reply from llama2:latest: What "
    assert (pieces[-1]["done_reason"], pieces[-1]["eval_count"]) == ("length", 5)

    gen = post_json(server + "/api/generate", {"model": "llama2", "prompt": "Hello", "stream": False})
    assert gen["response"] == "Stand-in reply from llama2:latest: Hello" and gen["done"] and "context" in gen

    v1 = post_json(server + "/v1/chat/completions", {"model": "llama2", "max_tokens": 3, "messages": [
        {"role": "user", "content": question}]})  # fmt: skip
    assert v1["object"] == "chat.completion" and v1["id"].startswith("chatcmpl-")
    assert v1["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Stand-in reply from "},
                              "finish_reason": "length"}]  # fmt: skip
    assert v1["usage"] == {"prompt_tokens": 6, "completion_tokens": 3, "total_tokens": 9}

    req = urllib.request.Request(server + "/v1/chat/completions", method="POST", data=json.dumps({
        "model": "llama2", "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "Hi"}]}).encode())  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["Content-Type"] == "text/event-stream"
        lines = [line for line in resp.read().decode().splitlines() if line]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[len("data: "):]) for line in lines[:-1]]
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks if c["choices"]) == \
        "Stand-in reply from llama2: Hi"  # fmt: skip
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5
    assert get_json(server + "/v1/models")["data"][0]["id"] == "llama2:latest"


def test_create_from_a_gguf_blob(server: str, tmp_path: Path) -> None:
    gguf = write_gguf(tmp_path / "tiny.gguf", {"general.architecture": "llama", "general.file_type": 7})
    data = gguf.read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert http_error(server + "/api/create", {"model": "tiny", "files": {"tiny.gguf": digest}})[0] == 400
    req = urllib.request.Request(f"{server}/api/blobs/{digest}", method="HEAD")
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(req, timeout=5)
    assert missing.value.code == 404

    wrong = urllib.request.Request(f"{server}/api/blobs/sha256:{'0' * 64}", data=data, method="POST")
    with pytest.raises(urllib.error.HTTPError) as mismatch:
        urllib.request.urlopen(wrong, timeout=5)
    assert mismatch.value.code == 400 and "digest mismatch" in json.loads(mismatch.value.read())["error"]
    with urllib.request.urlopen(urllib.request.Request(f"{server}/api/blobs/{digest}", data=data, method="POST"),
                                timeout=5) as created:  # fmt: skip
        assert created.status == 201

    # The create API before 2025 ({"modelfile": ...}) is refused, as current Ollama refuses it.
    assert http_error(server + "/api/create", {"model": "tiny", "modelfile": "FROM ./tiny.gguf"}) == (
        400, {"error": "neither 'from' or 'files' was specified"})
    events = post_ndjson(server + "/api/create", {"model": "tiny", "files": {"tiny.gguf": digest}})
    assert events == [{"status": "parsing GGUF"}, {"status": f"using existing layer {digest}"},
                      {"status": "writing manifest"}, {"status": "success"}]  # fmt: skip
    shown = post_json(server + "/api/show", {"model": "tiny"})
    assert shown["details"]["family"] == "llama" and shown["details"]["quantization_level"] == "Q8_0"
    assert post_json(server + "/api/copy", {"source": "tiny", "destination": "tiny-chat"}) is None
    assert {m["name"] for m in get_json(server + "/api/tags")["models"]} == {"tiny:latest", "tiny-chat:latest"}

    not_gguf = tmp_path / "x.gguf"
    not_gguf.write_bytes(b"NOPE" * 10)
    bad = "sha256:" + hashlib.sha256(not_gguf.read_bytes()).hexdigest()
    urllib.request.urlopen(urllib.request.Request(f"{server}/api/blobs/{bad}", data=not_gguf.read_bytes(),
                                                  method="POST"), timeout=5).close()  # fmt: skip
    assert post_ndjson(server + "/api/create", {"model": "bad", "files": {"x.gguf": bad}})[-1] == {
        "error": "invalid file magic"}


def test_version_command_and_a_busy_port(tmp_path: Path) -> None:
    port = ports.free_port()
    env = dict(os.environ, OLLAMA_HOST=f"127.0.0.1:{port}", OLLAMA_MODELS=str(tmp_path / "m"))
    offline = subprocess.run([str(STANDIN), "--version"], capture_output=True, text=True, env=env, timeout=30)
    assert offline.stdout.splitlines() == ["Warning: could not connect to a running Ollama instance",
                                           "Warning: client version is 0.14.0"]  # fmt: skip
    with running_standin(port, tmp_path / "m", tmp_path / "a.log"):
        online = subprocess.run([str(STANDIN), "--version"], capture_output=True, text=True, env=env, timeout=30)
        assert online.stdout.strip() == "ollama version is 0.14.0"
        busy = subprocess.run([str(STANDIN), "serve"], capture_output=True, text=True, env=env, timeout=30)
        assert busy.returncode == 1
        assert f"Error: listen tcp 127.0.0.1:{port}: bind: address already in use" in busy.stderr
    assert standin_servers(port) == []


def test_without_ollama_models_it_keeps_a_temp_store_and_removes_it(tmp_path: Path) -> None:
    port = ports.free_port()
    env = dict(os.environ, TMPDIR=str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    log = tmp_path / "serve.log"
    with running_standin(port, None, log, env=env) as proc:
        post_json(f"http://127.0.0.1:{port}/api/pull", {"model": "tinyllama", "stream": False})
        (store,) = (tmp_path / "tmp").glob("ollama-standin-*")
        assert (store / "manifests" / "registry.ollama.ai" / "library" / "tinyllama" / "latest").is_file()
    assert proc.returncode == 0  # SIGTERM is a clean shutdown
    assert list((tmp_path / "tmp").iterdir()) == []
    assert f"Listening on 127.0.0.1:{port} (version 0.14.0)" in log.read_text()
