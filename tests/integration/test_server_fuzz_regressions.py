"""What the fuzz (tests/reliability/test_fuzz.py) found, and what turned up while fixing that, one
regression test each: every one was a 500, or a request that never got an answer at all, and is
now a 400 or a proper answer. (The engine's side of it, a failing row failing alone, is in
test_server_engine_scheduler.py.)

On the shared tiny server, plus the pieces that failed (the body parser, the sampler) alone.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from backends.builtin_server.api.body import MAX_NESTING, nesting, parse_json_object
from backends.builtin_server.engine.request import Sampling
from backends.builtin_server.engine.sampling import RowSampler
from backends.builtin_server.errors import ApiError
from tests.openai_schema import problems
from tests.servers import ServerProcess

USER = [{"role": "user", "content": "hello"}]


def nested(depth: int) -> bytes:
    """A body whose ``messages`` is ``depth`` arrays deep (the whole body: depth + 1 levels)."""
    return b'{"messages": ' + b"[" * depth + b"]" * depth + b"}"


def assert_400(r: Any, *, code: str | None = None, param: str | None = None) -> None:
    assert r.status_code == 400, r.text
    assert problems("error", r.json()) == [], r.text
    if code is not None:
        assert r.json()["error"]["code"] == code, r.text
    if param is not None:
        assert r.json()["error"]["param"] == param, r.text


# ----------------------------------------------------------------------------- deeply nested JSON


@pytest.mark.parametrize("depth", [100_000, 2_000, 500, MAX_NESTING])
@pytest.mark.parametrize("path", ["/llm/", "/v1/chat/completions", "/v1/completions"])
def test_deeply_nested_json_is_a_400(tiny_server: ServerProcess, path: str, depth: int) -> None:
    """Found by the fuzz: a 500, json.loads raised RecursionError (not a ValueError) past ~1,000
    levels; and what it still parses nests deep enough to overflow the checks after it."""
    r = tiny_server.post(path, data=nested(depth), headers={"Content-Type": "application/json"})
    assert_400(r, code="too_deeply_nested")
    assert f"more than {MAX_NESTING} levels" in r.json()["error"]["message"]


def test_nesting_up_to_the_limit_is_left_to_validation() -> None:
    assert nesting({"a": [[1], {}], "b": 2}) == 3 and nesting({}) == 1
    assert nesting(parse_json_object(nested(MAX_NESTING - 1))) == MAX_NESTING
    with pytest.raises(ApiError) as info:
        parse_json_object(nested(MAX_NESTING))
    assert info.value.code == "too_deeply_nested"


# ----------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("temperature", [1.401298464324817e-45, 2.2250738585072014e-308, 5e-324, 1e-9])
def test_a_vanishing_temperature_samples_greedily(tiny_server: ServerProcess, temperature: float) -> None:
    """Found by the fuzz: a 500 (logits / 2e-308 is 0/0 in float32: NaN probabilities), and at
    1.4e-45, on a request's first token, no answer at all: the scheduler never resolved it."""
    body = {"messages": USER, "max_new_tokens": 6, "min_new_tokens": 6}
    greedy = tiny_server.post("/llm/", {**body, "do_sample": False})
    sampled = tiny_server.post("/llm/", {**body, "do_sample": True, "temperature": temperature}, timeout=30)
    assert greedy.status_code == 200 and sampled.status_code == 200, sampled.text
    reply = sampled.json()["data"]["response"]["choices"][0]["message"]["content"]
    assert reply == greedy.json()["data"]["response"]["choices"][0]["message"]["content"]


@pytest.mark.parametrize("penalty", [1e-300, 1e-40, 1e300])
def test_an_extreme_repetition_penalty_still_samples(tiny_server: ServerProcess, penalty: float) -> None:
    # 1e-300 pushes seen tokens' logits to +inf in float32: inf - inf was NaN in the draw.
    body = {"messages": USER, "max_new_tokens": 4, "min_new_tokens": 4, "repetition_penalty": penalty}
    for extra in ({"do_sample": True, "temperature": 0.7}, {"do_sample": True}, {"do_sample": False}):
        r = tiny_server.post("/llm/", {**body, **extra}, timeout=30)
        assert r.status_code == 200 and r.json()["data"]["completion_tokens"] == 4, (extra, r.text)


def test_the_sampler_survives_extreme_settings() -> None:
    logits = torch.randn(50, generator=torch.Generator().manual_seed(0))
    for temperature in (5e-324, 2.2e-308, 1.4e-45, 1e-6, 2.0, 1e300):
        for penalty in (1.0, 1e-300, 1e300):
            sampling = Sampling(do_sample=True, temperature=temperature, repetition_penalty=penalty, top_p=0.9)
            sampler = RowSampler(sampling, frozenset({0}), budget=4, prompt=(1, 2, 3))
            best = int(torch.nan_to_num(sampler._processed(logits.clone()), posinf=3e38).argmax())
            token, _ = sampler.pick(logits)
            assert 0 <= token < 50
            if temperature < 1e-5:  # greedy, its limit
                assert token == best, (temperature, penalty)


# ----------------------------------------------------------------------------- values past a limit


@pytest.mark.parametrize("seed", [2**64, -(2**63) - 1, 10**30])
def test_a_seed_past_64_bits_is_a_400(tiny_server: ServerProcess, seed: int) -> None:
    """Found while fixing the unanswered request above: torch.Generator.manual_seed raised in the
    scheduler, on the same path, and the request was never answered."""
    r = tiny_server.post("/v1/chat/completions", {"model": "tiny", "messages": USER, "max_tokens": 2, "seed": seed})
    assert_400(r, param="seed")


@pytest.mark.parametrize("seed", [2**63 - 1, -(2**63)])
def test_seeds_at_the_64_bit_ends_are_served(tiny_server: ServerProcess, seed: int) -> None:
    r = tiny_server.post("/v1/chat/completions", {"model": "tiny", "messages": USER, "max_tokens": 2, "seed": seed,
                                                  "temperature": 1.0})  # fmt: skip
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("key", ["²", "١", "9" * 5000, "1" * 19])
def test_a_logit_bias_key_that_is_no_token_id_is_a_400(tiny_server: ServerProcess, key: str) -> None:
    """Found reviewing the other int() conversions of request values: int("²") and int() of a
    5,000-digit string raise ValueError although isdigit() holds: a 500."""
    body = {"model": "tiny", "messages": USER, "max_tokens": 2, "logit_bias": {key: 1}}
    assert_400(tiny_server.post("/v1/chat/completions", body), param="logit_bias")
