"""The prefix cache in-process: greedy output is the same with and without it, token for token
(full hits, partial hits, misses, prompts sharing a prefix at once, rows joining and leaving,
chunked prefill, n = 2), it is used (cached tokens counted, a shared prefix computed once), and it
stays inside the KV budget, least recently used blocks leaving first.

On the tiny random-weight model: its output means nothing, but a cache that served one wrong
token of KV changes it. Grammar rows and tools need a real tokenizer:
tests/e2e/test_server_prefix_cache_smollm2.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from backends.builtin_server.engine.jobs import Completion
from backends.builtin_server.engine.request import ChatMessage, GenerationRequest, Sampling, TokenBudget
from backends.builtin_server.engine.scheduler import Engine
from backends.builtin_server.engine.slot_store import SlotStore
from tests.servers import wait_for
from tests.tiny_model import VOCABULARY

WORDS = VOCABULARY.split()
GREEDY_8 = Sampling(do_sample=False, min_new_tokens=8)


def words(seed: int, n: int) -> str:
    """A deterministic run of ``n`` vocabulary words (one token each for the tiny tokenizer)."""
    return " ".join(WORDS[(seed * 7 + i * (seed % 5 + 3)) % len(WORDS)] for i in range(n))


SYSTEM = words(1, 120)  # a shared system prompt: 7 blocks and more


def chat(*turns: str, system: str = SYSTEM, max_new: int = 8, **kwargs: Any) -> GenerationRequest:
    """A conversation: the system prompt, then user / assistant turns alternating."""
    messages = [ChatMessage("system", system)]
    messages += [ChatMessage("user" if i % 2 == 0 else "assistant", t) for i, t in enumerate(turns)]
    return GenerationRequest(sampling=kwargs.pop("sampling", GREEDY_8),
                             budget=TokenBudget(field="max_tokens", max_new_tokens=max_new),
                             messages=tuple(messages), **kwargs)  # fmt: skip


def answers(engine: Engine, requests: list[GenerationRequest]) -> list[Completion]:
    futures = [engine.submit(r) for r in requests]
    return [f.result(timeout=120) for f in futures]


@pytest.fixture()
def pair(make_engine: Any) -> tuple[Engine, Engine]:
    """The same model with and without the prefix cache."""
    cached, plain = make_engine(prefix_cache=True), make_engine(prefix_cache=False)
    assert isinstance(cached.store, SlotStore) and cached.store.prefix_caching and not plain.store.prefix_caching
    cached.start()
    plain.start()
    return cached, plain


def test_a_conversation_hits_fully_partly_or_not_and_answers_the_same(pair: tuple[Engine, Engine]) -> None:
    cached, plain = pair
    first = chat(words(2, 10))
    (turn1,) = answers(cached, [first])
    assert turn1.cached_tokens == 0  # a miss: nothing was cached yet
    assert turn1.text is not None
    second = chat(words(2, 10), turn1.text, words(3, 9))  # the next step resends the history
    again = chat(words(2, 10))  # the very same prompt: a full hit, but for its last token
    other = chat(words(2, 10), system=words(4, 120))  # another system prompt: a miss
    got = [turn1, *(answers(cached, [r])[0] for r in (second, again, other))]
    want = answers(plain, [first, second, again, other])
    assert [c.text for c in got] == [c.text for c in want]
    assert [c.completion_tokens for c in got] == [c.completion_tokens for c in want]
    assert all(c.cached_tokens == 0 for c in want)
    assert 0 < got[1].cached_tokens < got[1].prompt_tokens  # partly: system, turn 1 and its reply
    assert got[1].cached_tokens >= turn1.prompt_tokens - 16
    assert got[2].cached_tokens == (got[2].prompt_tokens - 1) // 16 * 16  # fully, but the last token
    assert got[3].cached_tokens == 0


def test_prompts_sharing_a_prefix_at_once_compute_it_once(make_engine: Any) -> None:
    cached, plain = make_engine(), make_engine(prefix_cache=False)
    requests = [chat(words(10 + i, 6)) for i in range(4)]
    got = answers(cached, requests) if cached.start() is None else []  # all queued before the first turn
    plain.start()
    want = answers(plain, requests)
    assert [c.text for c in got] == [c.text for c in want]
    # One of them computed the system prompt; the others waited for it and took it from the cache.
    assert sorted(c.cached_tokens > 0 for c in got) == [False, True, True, True]
    hits = cached.metrics.registry.get_sample_value("modelserve_prefix_cache_hits_total")
    assert hits == 3


def test_rows_joining_and_leaving_mid_generation_answer_as_alone(pair: tuple[Engine, Engine]) -> None:
    cached, plain = pair
    answers(cached, [chat(words(20, 5))])  # warm the cache with the system prompt
    runner = cached.submit(chat(words(21, 5), max_new=60, sampling=Sampling(False, min_new_tokens=60)))
    wait_for("the long row to decode", lambda: cached.steps > 2)
    joining = [chat(words(22 + i, 4), max_new=4 + 3 * i) for i in range(3)]  # leave at different steps
    got = answers(cached, joining)
    assert not runner.done() and all(c.cached_tokens > 0 for c in got)
    want = [answers(plain, [r])[0] for r in joining]  # each alone, no cache
    assert [c.text for c in got] == [c.text for c in want]
    assert runner.result(timeout=120).text == answers(plain, [chat(words(21, 5), max_new=60, sampling=Sampling(
        False, min_new_tokens=60))])[0].text  # fmt: skip


def test_a_long_prompt_behind_a_cached_prefix_is_chunked_and_answers_the_same(make_engine: Any,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from backends.builtin_server.engine import scheduler

    monkeypatch.setattr(scheduler, "PREFILL_TOKENS_PER_TURN", 48)  # several chunks per prompt
    cached, plain = make_engine(), make_engine(prefix_cache=False)
    cached.start()
    plain.start()
    long_turn = words(30, 150)
    requests = [chat(words(31, 5)), chat(words(31, 5), "yes", long_turn), chat(words(31, 5), "yes", long_turn)]
    got = [answers(cached, [r])[0] for r in requests]
    want = [answers(plain, [r])[0] for r in requests]
    assert [c.text for c in got] == [c.text for c in want]
    assert got[1].prompt_tokens - got[1].cached_tokens > 3 * 48  # the new part took several chunks
    assert got[2].cached_tokens > got[1].cached_tokens  # and then was cached itself


def test_n_choices_behind_a_cached_prefix_are_the_greedy_reply(pair: tuple[Engine, Engine]) -> None:
    cached, plain = pair
    answers(cached, [chat(words(40, 5))])
    (two,) = answers(cached, [chat(words(41, 5), n=2)])
    (alone,) = answers(plain, [chat(words(41, 5))])
    assert two.cached_tokens > 0 and [c.text for c in two.choices] == [alone.text, alone.text]


def test_the_cache_stays_in_the_budget_and_leaves_least_recently_used_first(make_engine: Any) -> None:
    # Room for one running row of ~150 tokens and the cached blocks of about two conversations.
    engine: Engine = make_engine(kv_budget_tokens=380, max_batch_size=1)
    engine.start()
    store = engine.store
    assert isinstance(store, SlotStore) and store.cache is not None
    a, b, c = (chat(words(50 + i, 5), system=words(60 + i, 100)) for i in range(3))
    for request in (a, b, c):
        answers(engine, [request])
        assert store.tokens <= engine.kv_budget
    # a was used least recently: evicted (from its last blocks on) to make room for c; b and c stay.
    again = [answers(engine, [r])[0] for r in (c, b, a)]
    print("prompt / cached tokens:", [(r.prompt_tokens, r.cached_tokens) for r in again])
    full = [(r.prompt_tokens - 1) // 16 * 16 for r in again]
    assert [r.cached_tokens for r in again[:2]] == full[:2]
    assert again[2].cached_tokens < full[2]
    assert store.cache.evictions > 0 and store.tokens <= engine.kv_budget
    metrics = engine.metrics
    assert metrics.registry.get_sample_value("modelserve_kv_cache_allocated_tokens") <= engine.kv_budget
    per_token = store.buffer.geometry.bytes_per_token
    assert metrics.registry.get_sample_value("modelserve_prefix_cache_bytes") <= engine.kv_budget * per_token


def test_idle_cache_gives_way_before_a_request_waits(make_engine: Any) -> None:
    engine: Engine = make_engine(kv_budget_tokens=700, max_batch_size=2)
    engine.start()
    store = engine.store
    assert isinstance(store, SlotStore) and store.cache is not None
    for i in range(3):  # fill the cache with idle conversations
        answers(engine, [chat(words(70 + i, 5), system=words(80 + i, 100))])
    assert store.cache.cached_tokens > 0
    # A request needing most of the budget is served now, the idle blocks making room, not queued.
    big = GenerationRequest(sampling=GREEDY_8, budget=TokenBudget(field="max_tokens", max_new_tokens=8),
                            messages=(ChatMessage("user", words(90, 500)),))  # fmt: skip
    (done,) = answers(engine, [big])
    assert done.completion_tokens == 8 and store.tokens <= engine.kv_budget


def test_a_model_the_slot_store_refuses_runs_as_before_without_the_cache(make_engine: Any, tiny: tuple[Any, Any],
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    from backends.builtin_server.engine import kv_slots, stores
    from backends.builtin_server.engine.padded_store import PaddedStore

    model = tiny[0]
    # A sliding window: the slot store's masks would read tokens the model must not see.
    monkeypatch.setattr(model.config, "sliding_window", 64, raising=False)
    assert "sliding window of 64" in str(stores.slot_store_refusal(model))
    monkeypatch.setattr(model.config, "sliding_window", None)
    # An attention that computes something else is caught by the start-up check.
    real = kv_slots.gqa_attention
    monkeypatch.setattr(kv_slots, "gqa_attention", lambda *a, **k: (real(*a, **k)[0] * 1.5, None))
    assert "different logits" in str(stores.slot_store_refusal(model))
    monkeypatch.setattr(kv_slots, "gqa_attention", real)

    monkeypatch.setattr(stores, "slot_store_refusal", lambda model: "a test says so")
    with caplog.at_level("WARNING", logger="modelserve.server"):
        padded = make_engine()
    assert isinstance(padded.store, PaddedStore) and not padded.store.prefix_caching
    assert [r.message for r in caplog.records if "prefix cache" in r.message] == [
        "prefix cache: off for this model (a test says so); requests are served without it"]
    monkeypatch.undo()
    cached = make_engine()
    padded.start()
    cached.start()
    requests = [chat(words(100 + i, 5 + i), n=1 + i % 2) for i in range(4)]
    got, want = answers(padded, requests), answers(cached, requests)
    assert [[c.text for c in r.choices] for r in got] == [[c.text for c in r.choices] for r in want]
    assert all(r.cached_tokens == 0 for r in got)
