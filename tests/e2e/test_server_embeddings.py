"""The built-in server as an embedding deployment (--task embed) on the real all-MiniLM-L6-v2:
the real openai SDK (its default base64 and float), vectors equal to sentence-transformers' own,
meaning, the `dimensions` rules, bad inputs, batching of concurrent requests, and the generation
routes refusing by task. One server for the module."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from tests import envs
from tests.servers import ServerProcess, StartServer

ROOT = Path(__file__).resolve().parents[2]
TEXTS = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today.",
         "Stocks dropped a lot on Wall Street."]  # fmt: skip

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(start_server: StartServer, minilm_dir: Path) -> ServerProcess:
    # A long batch wait: the concurrency test's burst surely shares one forward pass.
    return start_server(minilm_dir, "--task", "embed", "--batch-wait-ms", "200", name="minilm")


@pytest.fixture(scope="module")
def reference(minilm_dir: Path) -> Any:
    """sentence-transformers' own vectors for TEXTS, computed in this process."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir), device="cpu").encode(TEXTS)


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def embed(server: ServerProcess, body: dict[str, Any]) -> requests.Response:
    return server.post("/v1/embeddings", {"model": "minilm", **body})


def test_openai_sdk_default_base64_and_float_equal_sentence_transformers(server: ServerProcess, reference: Any) -> None:
    python = envs.ensure("agentscope-1.0.21", log=lambda m: print(m, file=sys.stderr))  # openai 1.x
    proc = subprocess.run([str(python), str(ROOT / "tests/clients/openai_embeddings.py"), server.url + "/v1", "minilm",
                           *TEXTS], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    lines = {line["kind"]: line for line in map(json.loads, proc.stdout.splitlines())}
    assert lines["raw"]["sent"]["encoding_format"] == "base64"  # the SDK's default, decoded by the SDK
    assert isinstance(lines["raw"]["first"], str)
    default, floats = lines["default"]["vectors"], lines["float"]["vectors"]
    assert len(default) == len(TEXTS) and all(len(v) == 384 for v in default)
    for got_b64, got_float, want in zip(default, floats, reference, strict=True):
        assert max(abs(x - y) for x, y in zip(got_b64, got_float, strict=True)) < 1e-6  # float32 either way
        assert cosine(got_b64, list(map(float, want))) > 0.999
    assert lines["float"]["usage"]["prompt_tokens"] == lines["float"]["usage"]["total_tokens"] > len(TEXTS)
    assert lines["dims"]["vectors"][0] == pytest.approx(floats[0], abs=1e-6)
    assert lines["bad_dims"]["status"] == 400 and "dimensions must be 384" in lines["bad_dims"]["message"]
    assert lines["empty"]["status"] == 400 and "must not be an empty array" in lines["empty"]["message"]


def test_similar_sentences_are_closer_than_unrelated_ones(server: ServerProcess) -> None:
    vectors = [d["embedding"] for d in embed(server, {"input": TEXTS}).json()["data"]]
    food, bread, market, stocks = vectors
    assert cosine(food, bread) > cosine(food, market) + 0.3
    assert cosine(market, stocks) > cosine(market, bread) + 0.3


def test_token_arrays_are_the_models_own_token_ids(server: ServerProcess, minilm_dir: Path) -> None:
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(minilm_dir)("hello world")["input_ids"]
    as_text = embed(server, {"input": "hello world"}).json()["data"][0]["embedding"]
    one = embed(server, {"input": ids}).json()
    many = embed(server, {"input": [ids, ids]}).json()
    assert one["data"][0]["embedding"] == pytest.approx(as_text, abs=1e-5)
    assert [d["index"] for d in many["data"]] == [0, 1] and many["usage"]["prompt_tokens"] == 2 * len(ids)


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"input": []}, 400, "input must not be an empty array"),
    ({"input": ""}, 400, "input[0] is an empty string"),
    ({"input": [[]]}, 400, "input[0] is an empty array of token ids"),
    ({"input": [1, "a"]}, 400, "input must be a string, an array of strings, an array of token ids"),
    ({"input": True}, 400, "input must be a string"),
    ({"input": [[1.5]]}, 400, "input must be a string"),
    ({"input": [[99_999_999]]}, 400, "outside this model's vocabulary (0..30521)"),
    ({"input": "word " * 300}, 400, "has 302 tokens; this model takes at most 256 per input"),
    ({"input": ["ok", "word " * 300]}, 400, "input[1] has 302 tokens"),
    ({"input": "x", "dimensions": 100}, 400, "dimensions must be 384 (this model's size) or left out"),
    ({"input": "x", "dimensions": 0}, 400, "dimensions must be >= 1"),
    ({"input": "x", "encoding_format": "int8"}, 400, 'encoding_format must be "float" or "base64"'),
    ({"input": "x", "temperature": 0}, 400, "unsupported field 'temperature' for /v1/embeddings"),
    ({"input": ["x"] * 2049}, 400, "input has 2049 items; at most 2048"),
    ({}, 400, "input is required"),
])  # fmt: skip
def test_bad_inputs_are_400s_that_say_what_to_fix(server: ServerProcess, body: dict[str, Any], status: int,
                                                  words: str) -> None:  # fmt: skip
    r = embed(server, body)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]["message"]


def test_wrong_model_is_a_404_and_dimensions_equal_to_the_size_pass(server: ServerProcess) -> None:
    assert server.post("/v1/embeddings", {"model": "other", "input": "x"}).status_code == 404
    r = embed(server, {"input": "x", "dimensions": 384, "encoding_format": "base64", "user": "u1"})
    assert r.status_code == 200 and isinstance(r.json()["data"][0]["embedding"], str)


def test_concurrent_requests_share_forward_passes(server: ServerProcess) -> None:
    def passes() -> float:
        return server.metrics()["modelserve_batch_inputs_count"]

    before, barrier, answers = passes(), threading.Barrier(16), []

    def one(i: int) -> None:
        barrier.wait(timeout=30)
        answers.append(embed(server, {"input": f"sentence number {i}"}).status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert answers == [200] * 16
    assert passes() - before < 16  # fewer forward passes than requests: they were batched


def test_generation_routes_refuse_an_embedding_model_by_task(server: ServerProcess) -> None:
    for path, body in (("/v1/chat/completions", {"model": "minilm", "messages": [{"role": "user", "content": "hi"}]}),
                       ("/v1/completions", {"model": "minilm", "prompt": "hi"}), ("/llm/", {"messages": []}),
                       ("/v1/messages", {"model": "minilm", "max_tokens": 4,
                                         "messages": [{"role": "user", "content": "hi"}]}),
                       ("/v1/responses", {"model": "minilm", "input": "hi"}),
                       ("/v1/rerank", {"model": "minilm", "query": "q", "documents": ["d"]})):  # fmt: skip
        r = server.post(path, body)
        assert r.status_code == 400, (path, r.text)
        error = r.json()["error"]  # each surface's own shape: Anthropic's has no code
        assert error.get("code", "wrong_task") == "wrong_task" and "'minilm' serves task embed" in error["message"]
    assert server.get("/v1/models").json()["data"][0]["id"] == "minilm"


def test_a_generation_server_refuses_embeddings_by_task(tiny_server: ServerProcess) -> None:
    r = tiny_server.post("/v1/embeddings", {"model": "tiny", "input": "hi"})
    assert r.status_code == 400
    assert "needs an embedding model (task embed), but 'tiny' serves task generate" in r.json()["error"]["message"]


def test_the_modelscope_loader_serves_the_same_vectors(start_server: StartServer, minilm_dir: Path,
                                                       server: ServerProcess) -> None:  # fmt: skip
    # A folder loads the same way with either loader (a hub id would go through ModelScope's cache).
    other = start_server(minilm_dir, "--task", "embed", "--loader", "modelscope", name="minilm")
    try:
        ours, theirs = (embed(s, {"input": TEXTS[0]}).json()["data"][0]["embedding"] for s in (other, server))
        assert ours == pytest.approx(theirs, abs=1e-6)
    finally:
        other.stop()
