"""The scheduler in-process on the tiny model: batching composition, per-row cuts, failures, shutdown.

Requests are queued before the scheduler thread starts, so which requests share a generate() call
is deterministic here (over HTTP it depends on arrival times).
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from backends.flask_server import loaders
from backends.flask_server.engine import (
    Completion,
    Engine,
    StreamDelta,
    StreamFailed,
    StreamFinished,
    StreamStarted,
    generation_defaults,
)
from backends.flask_server.protocol import (
    GREEDY,
    ApiError,
    ChatMessage,
    GenerationDefaults,
    GenerationRequest,
    Sampling,
    TokenBudget,
)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture()
def make_engine(tiny: tuple[Any, Any]) -> Iterator[Any]:
    engines: list[Engine] = []

    def make(tokenizer: Any = None, **kwargs: Any) -> Engine:
        model, tok = tiny
        kwargs.setdefault("max_batch_size", 8)
        kwargs.setdefault("max_new_tokens_limit", 4096)
        engine = Engine(model, tokenizer or tok, **kwargs)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.stop()


def request(text: str, max_new: int, sampling: Sampling = GREEDY, **kwargs: Any) -> GenerationRequest:
    return GenerationRequest(
        sampling=sampling,
        budget=TokenBudget(field="max_new_tokens", max_new_tokens=max_new),
        messages=(ChatMessage("user", text),),
        **kwargs,
    )


def chat_tokens(tok: Any, text: str) -> int:
    rendered = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
    return len(tok(rendered, add_special_tokens=False)["input_ids"])


def test_same_settings_share_a_batch_and_rows_keep_their_own_budget(make_engine: Any, tiny: tuple[Any, Any]) -> None:
    tok = tiny[1]
    engine: Engine = make_engine()
    # min_new_tokens is part of the batch key; with min = max = 3 the first row must stop at exactly 3.
    greedy3 = Sampling(do_sample=False, min_new_tokens=3)
    texts = ["hello", "what is the capital of france ?", "tell me about cats and dogs please"]
    budgets = [3, 6, 9]
    batch = [engine.submit(request(t, n, greedy3)) for t, n in zip(texts, budgets, strict=True)]
    sampled = engine.submit(request("hello", 4, Sampling(do_sample=True, temperature=0.8, top_p=1.0, top_k=0)))
    stream = engine.submit_stream(request("hello", 5, GREEDY, stream=True))
    late_greedy = engine.submit(request("hi", 2, greedy3))  # same key as the first three: joins their batch
    engine.start()

    results: list[Completion] = [f.result(timeout=60) for f in batch]
    for text, budget, result in zip(texts, budgets, results, strict=True):
        assert result.prompt_tokens == chat_tokens(tok, text)
        assert 3 <= result.completion_tokens <= budget
    assert (results[0].completion_tokens, results[0].finish_reason) == (3, "length")
    # Its own budget (2) wins over the batch-wide min_new_tokens (3): rows are cut individually.
    late = late_greedy.result(timeout=60)
    assert (late.completion_tokens, late.finish_reason) == (2, "length")
    assert sampled.result(timeout=60).completion_tokens <= 4
    events: list[Any] = []
    while not events or not isinstance(events[-1], StreamFinished | StreamFailed):
        events.append(stream.next_event())
    assert isinstance(events[0], StreamStarted)
    finished = events[-1]
    assert isinstance(finished, StreamFinished) and finished.completion_tokens <= 5
    assert all(isinstance(e, StreamDelta) for e in events[1:-1])
    # Batches: the four greedy ones together, then the sampled one, then the stream. The scheduler
    # records a batch just after resolving its last request, so the stream's record may lag a moment.
    histogram = engine.metrics.batch_size
    deadline = time.monotonic() + 10
    while histogram.count < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (histogram.count, histogram.total) == (3, 6)


def test_generate_failure_fails_that_batch_only(
    make_engine: Any, tiny: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tiny[0]
    real_generate = model.generate
    calls = {"n": 0}

    def flaky_generate(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", flaky_generate)
    engine: Engine = make_engine()
    engine.start()
    with pytest.raises(ApiError) as info:
        engine.submit(request("hello", 2)).result(timeout=60)
    assert info.value.status == 500 and "RuntimeError: boom" in info.value.message
    assert engine.submit(request("hello", 2)).result(timeout=60).prompt_tokens > 0
    assert engine.alive() and engine.metrics.generate_errors == 1


def test_prompt_that_does_not_fit_fails_alone(make_engine: Any) -> None:
    engine: Engine = make_engine()
    too_long = engine.submit(request("hello", 2047))
    fine = engine.submit(request("hi", 2))
    engine.start()
    with pytest.raises(ApiError) as info:
        too_long.result(timeout=60)
    assert info.value.status == 400 and "max_new_tokens 2047 does not fit" in info.value.message
    assert fine.result(timeout=60).completion_tokens <= 2


def test_no_chat_template_uses_agentscope_fallback(make_engine: Any, tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = None
    engine: Engine = make_engine(tok)
    engine.start()
    req = GenerationRequest(
        sampling=GREEDY,
        budget=TokenBudget(field="max_new_tokens", max_new_tokens=2),
        messages=(ChatMessage("system", "be brief"), ChatMessage("user", "hi", name="bob")),
    )
    result = engine.submit(req).result(timeout=60)
    assert result.prompt_tokens == len(tok("system: be brief\nbob: hi\nassistant: ")["input_ids"])


def test_template_error_is_a_400(make_engine: Any, tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = "{{ raise_exception('Conversation roles must alternate user/assistant') }}"
    engine: Engine = make_engine(tok)
    engine.start()
    with pytest.raises(ApiError) as info:
        engine.submit(request("hi", 2)).result(timeout=60)
    assert info.value.status == 400 and "roles must alternate" in info.value.message


def test_stop_fails_running_and_queued_requests(make_engine: Any) -> None:
    engine: Engine = make_engine()
    engine.start()
    long_greedy = Sampling(do_sample=False, min_new_tokens=1900)
    running: Future[Completion] = engine.submit(request("write a long story", 1900, long_greedy))
    deadline = time.monotonic() + 30
    while engine.running() == 0:
        assert time.monotonic() < deadline, "the long request never started"
        time.sleep(0.01)
    queued = engine.submit(request("hi", 2))
    started = time.monotonic()
    engine.stop()
    assert time.monotonic() - started < 5
    for future in (running, queued):
        with pytest.raises(ApiError) as info:
            future.result(timeout=10)
        assert info.value.status == 503
    with pytest.raises(ApiError):
        engine.submit(request("hi", 2))


def test_finish_cuts_rows(make_engine: Any, tiny: tuple[Any, Any]) -> None:
    tok = tiny[1]
    engine: Engine = make_engine()
    eos = tok.eos_token_id
    word = tok("hello", add_special_tokens=False)["input_ids"]
    finish_row = engine.runner.finish_row
    assert finish_row([*word, *word, eos, eos, eos], 10, ()) == (tok.decode(word * 2), 2 * len(word), "stop")
    assert finish_row(word * 5, 3 * len(word), ())[1:] == (3 * len(word), "length")
    text, count, reason = finish_row(word * 4, 10 * len(word), (tok.decode(word * 2),))
    assert (text, count, reason) == ("", 2 * len(word), "stop")


def test_generation_defaults_follow_the_model() -> None:
    from transformers import GenerationConfig

    assert generation_defaults(None) == GenerationDefaults()
    config = GenerationConfig(do_sample=True, temperature=0.6, top_p=0.9)
    assert generation_defaults(config) == GenerationDefaults(do_sample=True, temperature=0.6, top_p=0.9, top_k=50)


# ----------------------------------------------------------------------------- loaders


def test_model_ref_checks(tmp_path: Path, tiny_model_dir: Path) -> None:
    assert loaders.check_model_ref(str(tiny_model_dir)) == str(tiny_model_dir)
    assert loaders.check_model_ref("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    with pytest.raises(loaders.LoadError, match="no config.json"):
        loaders.check_model_ref(str(tmp_path))
    with pytest.raises(loaders.LoadError, match="is not a folder"):
        loaders.check_model_ref(str(tmp_path / "missing"))
    with pytest.raises(loaders.LoadError, match="is not a folder"):
        loaders.check_model_ref("./typo/model")


def test_dtype_and_device() -> None:
    import torch

    cpu = loaders.resolve_device("cpu")
    assert loaders.resolve_dtype("auto", cpu) == torch.float32
    assert loaders.resolve_dtype("bfloat16", cpu) == torch.bfloat16
    if not torch.cuda.is_available():
        with pytest.raises(loaders.LoadError, match="no CUDA device"):
            loaders.resolve_device("cuda:0")


def test_modelscope_loader_is_lazy_and_explains_a_missing_package() -> None:
    if importlib.util.find_spec("modelscope") is not None:
        model_cls, tokenizer_cls = loaders._auto_classes("modelscope")
        assert model_cls.__name__ == "AutoModelForCausalLM"
        return
    with pytest.raises(loaders.LoadError, match=r"--loader modelscope needs the modelscope package"):
        loaders._auto_classes("modelscope")


def test_seed_logit_bias_and_penalties_are_honoured(make_engine: Any, tiny: tuple[Any, Any]) -> None:
    import torch

    from backends.flask_server.generate_hooks import LogitBias, OpenAIPenalties

    engine = make_engine()
    engine.start()
    sampled = Sampling(do_sample=True, temperature=1.5, top_p=1.0, top_k=0)

    def text(sampling: Sampling) -> str:
        return str(engine.submit(request("Tell me something.", 12, sampling)).result(60).text)

    # seed: the same seed, the same reply (a seeded request is decoded alone, on its own generator)
    seeded = [text(Sampling(**{**sampled.__dict__, "seed": 7})) for _ in range(3)]
    assert len(set(seeded)) == 1
    assert len({text(Sampling(**{**sampled.__dict__, "seed": s})) for s in range(6)}) > 1
    # logit_bias: +100 on one token makes a greedy reply nothing but that token
    tok = tiny[1]
    token = tok.convert_tokens_to_ids("Paris") if "Paris" in tok.get_vocab() else 5
    biased = engine.submit(request("Hi", 3, Sampling(do_sample=False, logit_bias=((token, 100.0),)))).result(60)
    assert biased.text is not None and biased.text.split() == [tok.decode([token]).strip()] * 3
    # the processors themselves: OpenAI's arithmetic, generated tokens only (not the prompt)
    scores = torch.zeros(1, 6)
    ids = torch.tensor([[4, 4, 1, 1, 2]])  # a 2-token prompt (4, 4), then 1, 1, 2 generated
    penalised = OpenAIPenalties(presence=0.5, frequency=0.25, width=2)(ids, scores.clone())
    assert penalised.tolist() == [[0.0, -1.0, -0.75, 0.0, 0.0, 0.0]]
    assert LogitBias(((3, -2.0),), 6)(ids, scores.clone()).tolist() == [[0.0, 0.0, 0.0, -2.0, 0.0, 0.0]]
