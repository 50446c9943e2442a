"""A fleet with a chat, an embedding and a rerank member behind one gateway port (each task
detected from its model folder), routed by `model` on /v1/chat/completions, /v1/embeddings,
/v1/rerank and /rerank; one AgentScope config with the chat and embedding entries, used by
AgentScope 0.1.6; and an AgentScope 1.x agent answering a question from a small document set
through a knowledge base that embeds with the fleet's embedding member (the snippets
`modelserve config FLEET --member ID -f agentscope-v1` prints, unchanged)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from launcher.process import ports
from tests.e2e.conftest import client_lines, client_python

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.usefixtures("cleanup_deployments")]

DOCUMENTS = ["Cats sleep for most of the day.", "The secret code of the blue door is 7319.",
             "Paris is the capital of France.", "The stock market fell sharply today."]  # fmt: skip
QUESTION = "What is the secret code of the blue door?"


def test_chat_embedding_and_rerank_members_behind_one_port(modelserve: Any, smollm2_dir: Path, minilm_dir: Path,
                                                            tiny_reranker_dir: Path, in_tmp: Path,
                                                            agentscope_python: str) -> None:  # fmt: skip
    port = ports.free_port()
    base = f"http://127.0.0.1:{port}"
    (in_tmp / "fleet.yaml").write_text(
        f"name: kb\ngateway: {{port: {port}}}\npolicy: {{max_loaded: 0, idle_ttl: 0}}\ndeployments:\n"
        f"  - {{name: chat, model: {smollm2_dir}, threads: 1, preload: true}}\n"
        f"  - {{name: minilm, model: {minilm_dir}, threads: 1, preload: true}}\n"
        f"  - {{name: reranker, model: {tiny_reranker_dir}, threads: 1, preload: true}}\n"
    )  # fmt: skip
    up = json.loads(modelserve("up", "-c", "fleet.yaml", "--json").stdout)
    assert up["config_names"] == ["kb-chat-openai", "kb-chat-post", "kb-minilm-openai", "kb-minilm-post"]
    written = {e["config_name"]: e["model_type"] for e in json.loads((in_tmp / "model_config.json").read_text())}
    assert written["kb-minilm-openai"] == "openai_embedding" and written["kb-chat-openai"] == "openai_chat"

    chat = requests.post(f"{base}/v1/chat/completions", json={"model": "chat", "max_tokens": 8, "temperature": 0,
                         "messages": [{"role": "user", "content": "Hi"}]}, timeout=300)  # fmt: skip
    assert chat.status_code == 200, chat.text
    vectors = requests.post(f"{base}/v1/embeddings", json={"model": "minilm", "input": DOCUMENTS[:2]}, timeout=300)
    assert [len(d["embedding"]) for d in vectors.json()["data"]] == [384, 384]
    for path in ("/v1/rerank", "/rerank"):
        ranked = requests.post(base + path, json={"model": "reranker", "query": "cats", "top_n": 1,
                                                  "documents": ["dogs", "two cats", "paris"]}, timeout=300)  # fmt: skip
        assert ranked.status_code == 200, ranked.text
        assert [r["index"] for r in ranked.json()["results"]] == [1]
    wrong = requests.post(f"{base}/v1/embeddings", json={"model": "chat", "input": "x"}, timeout=300)
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "wrong_task"

    lines = client_lines(agentscope_python, "agentscope_016_embedding.py", str(in_tmp / "model_config.json"),
                         "kb-minilm-openai,kb-minilm-post", "hello")  # fmt: skip
    assert [len(x["vectors"][0]) for x in lines] == [384, 384]

    embed_snippet, chat_snippet = in_tmp / "embed_v1.py", in_tmp / "chat_v1.py"
    embed_snippet.write_text(modelserve("config", "kb", "--member", "minilm", "-f", "agentscope-v1").stdout)
    chat_snippet.write_text(modelserve("config", "kb", "--member", "chat", "-f", "agentscope-v1", "--temperature", "0",
                                       "--max-tokens", "48").stdout)  # fmt: skip
    found = {x["kind"]: x for x in client_lines(client_python("agentscope-1.0.21-rag"), "agentscope_v1_rag.py",
                                                  str(embed_snippet), str(chat_snippet), QUESTION, *DOCUMENTS,
                                                  timeout=600)}  # fmt: skip
    assert found["snippet"] == {"kind": "snippet", "class": "OpenAITextEmbedding", "dimensions": 384,
                                "sizes": [384, 384]}  # fmt: skip
    assert found["retrieved"]["texts"] == [DOCUMENTS[1]]  # the knowledge base found the one that answers
    assert "7319" in found["answer"]["text"], found["answer"]

    modelserve("down", "kb")
