"""The scheduler in-process on the tiny model: rows of every kind sharing steps, per-row budgets,
cancellation within a step, n / seed / logprobs, the KV budget and the queue limit, chunked
prefill, failures and shutdown.

Requests queued before the scheduler thread starts are admitted together, which makes the first
steps' composition deterministic here (over HTTP it depends on arrival times).
"""

from __future__ import annotations

import importlib.util
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from backends.builtin_server.engine import loaders
from backends.builtin_server.engine.jobs import Completion, StreamFailed, StreamFinished, StreamStarted
from backends.builtin_server.engine.request import (
    GREEDY,
    ChatMessage,
    GenerationDefaults,
    GenerationRequest,
    Sampling,
    TokenBudget,
    generation_defaults,
)
from backends.builtin_server.engine.scheduler import Engine
from backends.builtin_server.errors import ApiError
from tests.servers import wait_for


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


def run_stream(handle: Any) -> list[Any]:
    events: list[Any] = []
    while not events or not isinstance(events[-1], StreamFinished | StreamFailed):
        events.append(handle.next_event())
    return events


def step_rows_at_most(engine: Engine, rows: int) -> float:
    """Steps that decoded at most ``rows`` rows together (the step-rows histogram's bucket)."""
    value = engine.metrics.registry.get_sample_value("modelserve_step_rows_bucket", {"le": f"{float(rows)}"})
    return float(value or 0.0)


def test_different_settings_share_steps_and_rows_keep_their_own_budget(make_engine: Any,
                                                                        tiny: tuple[Any, Any]) -> None:  # fmt: skip
    tok = tiny[1]
    engine: Engine = make_engine()
    texts = ["hello", "what is the capital of france ?", "tell me about cats and dogs please"]
    budgets = [3, 6, 9]
    at_least = Sampling(do_sample=False, min_new_tokens=3)
    plain = [engine.submit(request(t, n, at_least)) for t, n in zip(texts, budgets, strict=True)]
    sampled = engine.submit(request("hello", 4, Sampling(do_sample=True, temperature=0.8, top_p=0.9, top_k=20)))
    stream = engine.submit_stream(request("hello", 5, GREEDY, stream=True))
    engine.start()

    results: list[Completion] = [f.result(timeout=60) for f in plain]
    for text, budget, result in zip(texts, budgets, results, strict=True):
        assert result.prompt_tokens == chat_tokens(tok, text)
        assert 3 <= result.completion_tokens <= budget
    assert (results[0].completion_tokens, results[0].finish_reason) == (3, "length")
    assert sampled.result(timeout=60).completion_tokens <= 4
    events = run_stream(stream)
    assert isinstance(events[0], StreamStarted)
    assert isinstance(events[-1], StreamFinished) and events[-1].completion_tokens <= 5
    # Greedy, sampled and streamed rows all decoded in the same steps: the first step had all five.
    assert engine.steps < 9 + 5 and step_rows_at_most(engine, 4) < engine.steps


def test_a_failed_step_fails_its_rows_only_and_the_engine_goes_on(make_engine: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    engine: Engine = make_engine()
    real_step = engine.store.step
    calls = {"n": 0}

    def flaky_step() -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return real_step()

    monkeypatch.setattr(engine.store, "step", flaky_step)
    engine.start()
    with pytest.raises(ApiError) as info:
        engine.submit(request("hello", 4, Sampling(do_sample=False, min_new_tokens=4))).result(timeout=60)
    assert info.value.status == 500 and "RuntimeError: boom" in info.value.message
    assert engine.submit(request("hello", 2)).result(timeout=60).prompt_tokens > 0
    assert engine.alive() and engine.metrics.registry.get_sample_value("modelserve_generate_errors_total") == 1
    assert len(engine.store) == 0 and engine.rows == []


def test_a_cancelled_stream_stops_using_compute_within_one_step(make_engine: Any) -> None:
    engine: Engine = make_engine()
    engine.start()
    long = Sampling(do_sample=False, min_new_tokens=500)
    companion = engine.submit(request("keep going", 500, long))
    handle = engine.submit_stream(request("tell me a long story", 500, long, stream=True))
    wait_for("both rows to decode", lambda: len(engine.rows) == 2 and all(len(r.ids) >= 3 for r in engine.rows))
    (row,) = [r for r in engine.rows if r.streaming]
    generated = len(row.ids)
    handle.cancel()
    wait_for("the cancelled row to leave", lambda: len(engine.rows) == 1)
    # The step running when the client left may finish its token; no step after it includes the row.
    assert len(row.ids) - generated <= 1 and row.reason == "cancelled"
    assert len(engine.store) == 1 and not companion.done()  # the other row decodes on, alone
    wait_for("a few more steps", lambda: len(engine.rows[0].ids) >= len(row.ids) + 3)
    events = run_stream(handle)
    assert isinstance(events[-1], StreamFinished)


def test_n_choices_share_a_prefill_and_seed_repeats_them(make_engine: Any) -> None:
    engine: Engine = make_engine()
    engine.start()
    seeded = Sampling(do_sample=True, temperature=1.0, top_p=1.0, top_k=0, seed=11)
    first = engine.submit(request("hello there", 8, seeded, n=3)).result(timeout=60)
    again = engine.submit(request("hello there", 8, seeded, n=3)).result(timeout=60)
    assert len(first.choices) == 3 and first == again  # same seed, prompt, settings: the same texts
    assert len({c.text for c in first.choices}) > 1  # yet each choice is its own draw
    assert first.completion_tokens == sum(c.completion_tokens for c in first.choices)
    other = engine.submit(request("hello there", 8, Sampling(**{**seeded.__dict__, "seed": 12}), n=3)).result(60)
    assert other.choices != first.choices
    # greedy: every choice is the one greedy reply
    greedy = engine.submit(request("hello there", 6, GREEDY, n=2)).result(timeout=60)
    alone = engine.submit(request("hello there", 6, GREEDY)).result(timeout=60)
    assert [c.text for c in greedy.choices] == [alone.text, alone.text]


def test_logprobs_are_the_models_own(make_engine: Any, tiny: tuple[Any, Any]) -> None:
    import torch

    model, tok = tiny
    engine: Engine = make_engine()
    engine.start()
    result = engine.submit(request("hello", 5, Sampling(do_sample=False, min_new_tokens=5), logprobs=3)).result(60)
    (choice,) = result.choices
    assert choice.logprobs is not None and len(choice.logprobs) == 5
    rendered = tok.apply_chat_template([{"role": "user", "content": "hello"}], tokenize=False,
                                       add_generation_prompt=True)  # fmt: skip
    ids = tok(rendered, add_special_tokens=False)["input_ids"]
    for lp in choice.logprobs:  # greedy by hand, no cache, one whole forward per token
        with torch.inference_mode():
            expected = torch.log_softmax(model(torch.tensor([ids])).logits[0, -1].float(), dim=-1)
        allowed = expected.clone()
        allowed[tok.eos_token_id] = float("-inf")  # min_new_tokens
        chosen = int(allowed.argmax())
        # Logprobs are the model's distribution, before min_tokens or any other processing (as vLLM's).
        assert lp.logprob == pytest.approx(float(expected[chosen]), abs=1e-4)
        best = expected.topk(3)
        assert [round(t[1], 4) for t in lp.top] == [round(float(v), 4) for v in best.values.tolist()]
        assert lp.token == tok.decode([chosen]) and lp.bytes == tuple(lp.token.encode())
        ids.append(chosen)


def test_kv_budget_queues_what_does_not_fit_and_refuses_what_never_will(make_engine: Any,
                                                                         tiny: tuple[Any, Any]) -> None:  # fmt: skip
    tok = tiny[1]
    need = chat_tokens(tok, "hello") + 6
    engine: Engine = make_engine(kv_budget_tokens=need + 4)  # one such request fits, two do not
    both = [engine.submit(request("hello", 6, Sampling(do_sample=False, min_new_tokens=6))) for _ in range(2)]
    too_big = engine.submit(request("hello", 40))
    engine.start()
    assert [f.result(timeout=60).completion_tokens for f in both] == [6, 6]
    assert step_rows_at_most(engine, 1) == engine.steps  # never together
    with pytest.raises(ApiError) as info:
        too_big.result(timeout=60)
    assert info.value.status == 400 and info.value.param == "max_tokens" and "KV cache" in info.value.message


def test_a_full_queue_answers_503_with_retry_after(make_engine: Any) -> None:
    engine: Engine = make_engine(max_queue=2)
    waiting = [engine.submit(request("hello", 2)) for _ in range(2)]
    with pytest.raises(ApiError) as info:
        engine.submit(request("hello", 2))
    assert info.value.status == 503 and info.value.retry_after is not None and info.value.retry_after >= 1
    assert engine.metrics.registry.get_sample_value("modelserve_rejected_requests_total") == 1
    engine.start()
    assert all(f.result(timeout=60).completion_tokens <= 2 for f in waiting)  # nothing queued was lost


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


def test_sampler_arithmetic_is_openais_and_hfs() -> None:
    import torch

    from backends.builtin_server.engine.sampling import RowSampler

    def scores_after(sampling: Sampling, prompt: tuple[int, ...], generated: list[int]) -> list[float]:
        sampler = RowSampler(sampling, frozenset({5}), budget=10, prompt=prompt)
        for token in generated:  # the row's history, through the real bookkeeping
            sampler._counts = sampler._counts if sampler._counts is not None else torch.zeros(6)
            sampler._record(token)
        return [round(x, 4) for x in sampler._processed(torch.zeros(6)).tolist()]

    # presence / frequency (OpenAI's): over generated tokens only, not the prompt (4, 4)
    assert scores_after(Sampling(False, presence_penalty=0.5, frequency_penalty=0.25), (4, 4), [1, 1, 2]) == [
        0.0, -1.0, -0.75, 0.0, 0.0, 0.0]  # fmt: skip
    # logit_bias adds; min_tokens forbids eos until reached
    assert scores_after(Sampling(False, logit_bias=((3, -2.0),), min_new_tokens=2), (), [1]) == [
        0.0, 0.0, 0.0, -2.0, 0.0, float("-inf")]  # fmt: skip
    # repetition penalty (HF's): divides positive, multiplies negative scores of seen tokens
    sampler = RowSampler(Sampling(False, repetition_penalty=2.0), frozenset({5}), budget=10, prompt=(0, 1))
    assert sampler._processed(torch.tensor([2.0, -2.0, 2.0, 0.0, 0.0, 0.0])).tolist() == [1.0, -4.0, 2.0, 0, 0, 0]


def test_logit_bias_steers_a_greedy_reply(make_engine: Any, tiny: tuple[Any, Any]) -> None:
    engine = make_engine()
    engine.start()
    tok = tiny[1]
    token = tok.convert_tokens_to_ids("Paris") if "Paris" in tok.get_vocab() else 5
    biased = engine.submit(request("Hi", 3, Sampling(do_sample=False, logit_bias=((token, 100.0),)))).result(60)
    assert biased.text is not None and biased.text.split() == [tok.decode([token]).strip()] * 3


def test_a_long_prompt_is_prefilled_a_chunk_per_step_while_others_decode(make_engine: Any,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from backends.builtin_server.engine import scheduler as engine_module

    long_text = " ".join(["cats and dogs"] * 300)  # ~900 tokens: four chunks of 256
    steady = Sampling(do_sample=False, min_new_tokens=8)
    monkeypatch.setattr(engine_module, "PREFILL_TOKENS_PER_TURN", 4096)  # one forward pass for any prompt
    whole = make_engine()
    whole.start()
    reference = whole.submit(request(long_text, 8, steady)).result(timeout=60)
    monkeypatch.setattr(engine_module, "PREFILL_TOKENS_PER_TURN", 256)

    chunked: Engine = make_engine()
    steps_at_chunk: list[int] = []
    real_prefill = chunked.store.prefill

    def prefill() -> Any:
        if any(len(p.ids) > 256 for p in chunked._prefilling):  # the long prompt's passes
            steps_at_chunk.append(chunked.steps)
        return real_prefill()

    monkeypatch.setattr(chunked.store, "prefill", prefill)
    chunked.start()
    runner = chunked.submit(request("keep going", 200, Sampling(do_sample=False, min_new_tokens=200)))
    wait_for("the first request to decode", lambda: chunked.steps > 0)
    result = chunked.submit(request(long_text, 8, steady)).result(timeout=60)
    assert result.prompt_tokens == reference.prompt_tokens > 3 * 256
    assert len(steps_at_chunk) == -(-result.prompt_tokens // 256)
    # Between two chunks exactly one decoding step ran: the running row never waited for the whole prompt.
    assert [b - a for a, b in zip(steps_at_chunk, steps_at_chunk[1:], strict=False)] == [1] * (len(steps_at_chunk) - 1)
    assert result.text == reference.text
    assert runner.result(timeout=60).completion_tokens == 200


@pytest.mark.parametrize("fail_at", [0, 2], ids=["first-token", "mid-decode"])
def test_a_row_whose_sampling_fails_fails_its_request_alone(make_engine: Any, monkeypatch: pytest.MonkeyPatch,
                                                             fail_at: int) -> None:  # fmt: skip
    """Found by the fuzz (a vanishing temperature made the draw raise): at a request's first token
    the request was never answered, and mid-decode the failure ended every row of the batch."""
    from backends.builtin_server.engine.sampling import RowSampler

    real_pick = RowSampler.pick

    def pick(self: RowSampler, logits: Any) -> Any:
        if self.sampling.seed == 666 and len(self.generated) == fail_at:  # the marked requests only
            raise RuntimeError("bad row")
        return real_pick(self, logits)

    monkeypatch.setattr(RowSampler, "pick", pick)
    engine: Engine = make_engine()
    bad = Sampling(do_sample=True, temperature=0.5, seed=666, min_new_tokens=4)
    neighbour = engine.submit(request("hello", 6, Sampling(do_sample=False, min_new_tokens=6)))
    plain = engine.submit(request("hello", 4, bad))
    stream = engine.submit_stream(request("hello", 4, bad, stream=True))
    engine.start()  # all three are admitted together: one prefill, then shared steps

    with pytest.raises(ApiError) as info:
        plain.result(timeout=60)
    assert info.value.status == 500 and "RuntimeError: bad row" in info.value.message
    failed = run_stream(stream)[-1]
    assert isinstance(failed, StreamFailed) and failed.error.status == 500
    assert neighbour.result(timeout=60).completion_tokens == 6
    assert engine.alive() and engine.metrics.registry.get_sample_value("modelserve_generate_errors_total") == 2
    wait_for("the rows to leave", lambda: engine.rows == [] and len(engine.store) == 0)
