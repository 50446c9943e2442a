"""The built-in server as a rerank deployment (--task rerank) on a tiny cross-encoder constructed
to prefer documents that contain a query word (tests/pooling_models.py): the order and shape of
the answer, scores equal to sentence-transformers' CrossEncoder on the same folder, top_n,
return_documents, bad inputs, and the other routes refusing by task. One server for the module.
What the model proves and does not is said in tests/pooling_models.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.servers import ServerProcess, StartServer

QUERY = "cats"
DOCUMENTS = ["the capital of paris", "dogs and two cats", {"text": "a story about tokyo"}, "cats cats cats",
             "yes or no"]  # fmt: skip
TEXTS = [d if isinstance(d, str) else d["text"] for d in DOCUMENTS]


@pytest.fixture(scope="module")
def server(start_server: StartServer, tiny_reranker_dir: Path) -> ServerProcess:
    return start_server(tiny_reranker_dir, "--task", "rerank", name="reranker")


def rerank(server: ServerProcess, body: dict[str, Any], path: str = "/v1/rerank") -> Any:
    return server.post(path, {"model": "reranker", **body})


def test_results_are_sorted_by_the_models_scores_with_indices_and_documents(server: ServerProcess,
                                                                             tiny_reranker_dir: Path) -> None:  # fmt: skip
    from sentence_transformers import CrossEncoder

    r = rerank(server, {"query": QUERY, "documents": DOCUMENTS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "reranker" and body["id"].startswith("rerank-")
    results = body["results"]
    assert sorted(x["index"] for x in results) == [0, 1, 2, 3, 4]
    scores = [x["relevance_score"] for x in results]
    assert scores == sorted(scores, reverse=True)
    assert {results[0]["index"], results[1]["index"]} == {1, 3}  # the two that mention cats
    assert all(x["relevance_score"] > 0.9 for x in results[:2]) and all(x["relevance_score"] < 0.1 for x in results[2:])
    assert all(x["document"] == {"text": TEXTS[x["index"]]} for x in results)
    direct = CrossEncoder(str(tiny_reranker_dir), device="cpu").predict([(QUERY, t) for t in TEXTS])
    for x in results:
        assert x["relevance_score"] == pytest.approx(float(direct[x["index"]]), abs=1e-5)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > len(TEXTS) * 4


def test_top_n_return_documents_and_the_short_route(server: ServerProcess) -> None:
    best = rerank(server, {"query": "paris", "documents": TEXTS, "top_n": 1, "return_documents": False},
                  path="/rerank").json()["results"]  # fmt: skip
    assert best == [{"index": 0, "relevance_score": pytest.approx(best[0]["relevance_score"])}]
    assert best[0]["relevance_score"] > 0.9
    everything = rerank(server, {"query": "paris", "documents": TEXTS, "top_n": 0}).json()["results"]
    assert len(everything) == 5  # 0 means all, as vLLM reads it
    assert len(rerank(server, {"query": "paris", "documents": TEXTS, "top_n": 99}).json()["results"]) == 5


@pytest.mark.parametrize(("body", "words"), [
    ({"query": "cats", "documents": []}, "documents must not be an empty array"),
    ({"query": "", "documents": ["a"]}, "query must not be empty"),
    ({"query": "cats", "documents": [1]}, 'documents[0] must be a string or {"text": "..."}'),
    ({"query": "cats", "documents": "cats"}, "documents must be an array"),
    ({"query": 3, "documents": ["a"]}, "query must be a string"),
    ({"query": "cats", "documents": ["a"], "top_n": -1}, "top_n must be >= 0"),
    ({"query": "cats", "documents": ["a", "cats " * 70]}, "the query with documents[1] is 74 tokens; this model "
                                                            "takes at most 64 per pair"),
    ({"documents": ["a"]}, "query is required"),
    ({"query": "cats", "documents": ["a"], "rank_fields": ["x"]}, "unsupported field 'rank_fields'"),
])  # fmt: skip
def test_bad_inputs_are_400s_that_say_what_to_fix(server: ServerProcess, body: dict[str, Any], words: str) -> None:
    r = rerank(server, body)
    assert r.status_code == 400, r.text
    assert words in r.json()["error"]["message"]


def test_other_routes_refuse_a_reranker_by_task(server: ServerProcess) -> None:
    r = server.post("/v1/embeddings", {"model": "reranker", "input": "x"})
    assert r.status_code == 400 and "'reranker' serves task rerank" in r.json()["error"]["message"]
    r = server.post("/v1/chat/completions", {"model": "reranker", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "wrong_task"
