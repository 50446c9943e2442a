"""`modelserve config` for embedding and rerank deployments: every format x endpoint kind against
golden files, and the rules the clients impose (no `temperature` in an embedding entry, the
model's real size in `dimensions`)."""

from __future__ import annotations

import json

import pytest

from launcher.agents import agentscope, formats
from launcher.core.deployment import AgentScopeSettings
from launcher.core.errors import ClientConfigError
from launcher.core.launch import ClientEndpoint
from tests.golden import assert_golden

OPENAI = ClientEndpoint("openai_embedding", "http://127.0.0.1:8000/v1", "minilm", None, 384)
POST = ClientEndpoint("post_api_embedding", "http://127.0.0.1:8000/v1/embeddings", "minilm", None, 384)
OLLAMA = ClientEndpoint("ollama_embedding", "http://127.0.0.1:11434", "all-minilm:latest")
RERANK = ClientEndpoint("rerank", "http://127.0.0.1:8000/v1/rerank", "reranker")
KINDS = {"openai": OPENAI, "post": POST, "ollama": OLLAMA, "rerank": RERANK}
EXT = {"agentscope": "json", "modelscope-agent": "json", "agentfabric": "json", "agentscope-v1": "py",
       "agentscope-v2": "py", "openai-env": "env"}  # fmt: skip


def keyed(e: ClientEndpoint) -> ClientEndpoint:
    return ClientEndpoint(e.kind, e.url, e.model_name, "s3cret", e.dimensions)


def render(fmt: str, *endpoints: ClientEndpoint, only: str | None = None) -> formats.RenderedConfig:
    return formats.render(fmt, endpoints, AgentScopeSettings(), deployment="minilm", base="minilm",  # type: ignore[arg-type]
                          only=only)  # fmt: skip


CASES = [("openai", False), ("openai", True), ("post", False), ("post", True), ("ollama", False), ("rerank", False)]


@pytest.mark.parametrize("fmt", formats.FORMATS)
@pytest.mark.parametrize(("kind", "key"), CASES, ids=[f"{k}-{'key' if v else 'nokey'}" for k, v in CASES])
def test_every_format_for_every_embedding_kind_golden(fmt: str, kind: str, key: bool) -> None:
    endpoint = keyed(KINDS[kind]) if key else KINDS[kind]
    name = f"clients/{fmt}/embed-{kind}{'-key' if key else ''}"
    try:
        rendered = render(fmt, endpoint)
    except ClientConfigError as exc:
        assert exc.exit_code == 9
        assert_golden(f"{name}.error.txt", str(exc) + "\n")
        return
    assert rendered.endpoints == (endpoint,)
    assert rendered.holds_secret == key
    assert_golden(f"{name}.{EXT[fmt]}", rendered.text)


def test_agentscope_embedding_entries_never_carry_generation_settings() -> None:
    # The shipped openai_embedding template puts temperature in generate_args; embeddings.create refuses it.
    for entry in agentscope.agentscope_entries([OPENAI, POST, OLLAMA], AgentScopeSettings(temperature=0.3), "m"):
        text = json.dumps(entry)
        assert "temperature" not in text and "max_tokens" not in text and "generate_args" not in entry


def test_an_embedding_deployment_gets_both_0x_entries_under_the_usual_names() -> None:
    rendered = render("agentscope", OPENAI, POST)
    assert [(e["config_name"], e["model_type"]) for e in rendered.entries] == [
        ("minilm-openai", "openai_embedding"), ("minilm-post", "post_api_embedding")]  # fmt: skip
    assert formats.entry_base("minilm", ["minilm-openai", "minilm-post"]) == "minilm"
    assert render("agentscope", OPENAI, POST, only="post").endpoints == (POST,)


def test_snippets_send_the_real_size_and_are_valid_python() -> None:
    for fmt in ("agentscope-v1", "agentscope-v2"):
        for endpoint in (OPENAI, keyed(OPENAI), OLLAMA):
            text = render(fmt, endpoint).text
            compile(text, f"<{fmt}>", "exec")
            assert ("dimensions=384," in text) == (endpoint.dimensions == 384)


def test_a_reranker_has_no_agent_config_and_up_writes_none() -> None:
    assert agentscope.agentscope_entries([RERANK], AgentScopeSettings(), "r") == []
    with pytest.raises(ClientConfigError, match="no reranker client"):
        render("agentscope", RERANK)
