"""The grammar endgame (tools/endgame.py): a constrained reply that fits its max_tokens at all is
valid however the model would rather go on, and takes the room it has (nothing reserved beyond
what its grammar still needs); one that cannot fit runs to its budget and says "length".

Stand-in models on SmolLM2's real tokenizer drive the sampler (a rambler that wants to stay
inside a string, a random one that writes anything the grammar allows); then the real engine on a
random-weight model with that tokenizer, over HTTP, plain and streamed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch
from transformers import AutoTokenizer

from backends.builtin_server.engine.request import GREEDY
from backends.builtin_server.engine.sampling import RowSampler
from backends.builtin_server.tools.constraints import Grammars, closed, tool_calls_schema
from backends.builtin_server.tools.endgame import Endgame
from backends.builtin_server.tools.parsers import PARSERS
from backends.builtin_server.tools.spec import Function, ToolRequest
from tests.servers import ServerProcess, StartServer

VOCAB = 49152
CITY = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"},
                                         "population_millions": {"type": "integer"}},
        "required": ["city", "country", "population_millions"]}  # fmt: skip
ITEM = {"type": "object", "properties": {"x": {"type": "number", "minimum": 10}, "tag": {"enum": ["alpha", "beta"]},
                                         "n": {"type": "integer", "maximum": -5}},
        "required": ["x", "tag", "n"]}  # fmt: skip
NESTED = {"type": "object", "properties": {"rows": {"type": "array", "minItems": 2,
                                                    "items": {"type": "array", "minItems": 1, "items": ITEM}},
                                           "ok": {"type": "boolean"}, "name": {"type": "string", "minLength": 3},
                                           "note": {"type": "string"}},
          "required": ["rows", "ok", "name"]}  # fmt: skip
WEATHER = {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
           "required": ["city"]}  # fmt: skip
TIME = {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}
TOOLS = ToolRequest((Function("get_weather", None, WEATHER), Function("get_time", None, TIME)), choice="required")
# Each schema, and the shortest reply it allows: the endgame's plan from the start writes it.
SHORTEST = {
    "city": (closed(CITY), '{"city": "", "country": "", "population_millions": 0}'),
    "nested": (closed(NESTED), '{"rows": [[{"x": 10, "tag": "alpha", "n": -10}], [{"x": 10, "tag": "alpha", "n": -10}]], '
                               '"ok": true, "name": "aaa"}'),
    "tools": (tool_calls_schema(TOOLS), '{"tool_calls": [{"name": "get_time", "arguments": {"timezone": ""}}]}'),
}  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """These tests run thousands of steps on 49k-wide tensors: with a thread per core, each small
    op waits on cores that other work holds (40 ms a step on a busy 2-core machine, 1 ms alone)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.fixture(scope="module")
def grammars(tokenizer: Any) -> Grammars:
    return Grammars(tokenizer, vocab_size=VOCAB, eos_ids=[tokenizer.eos_token_id])


def shortest(grammars: Grammars, schema: dict[str, Any]) -> int:
    """How many tokens the shortest reply takes, by the endgame's own plan from the start."""
    game = Endgame.start(grammars.closer, grammars.matcher(grammars.grammar(schema, lenient=False, where="t")), 10**6)
    assert game.plan is not None
    return len(game.plan)


def valid(name: str, text: str) -> bool:
    """Whether ``text`` is a complete reply for SHORTEST[name]'s schema (raises when it is not)."""
    if name == "tools":
        parsed = PARSERS["generic"].extract(text, TOOLS)
        assert parsed.content is None and len(parsed.calls) == 1, text
        call = parsed.calls[0]
        jsonschema.validate(call.arguments_object(), WEATHER if call.name == "get_weather" else TIME)
    else:
        jsonschema.validate(json.loads(text), CITY if name == "city" else NESTED)
    return True


def decode(tokenizer: Any, grammars: Grammars, schema: dict[str, Any], budget: int,
           model: Any) -> tuple[str, int]:  # fmt: skip
    """Decode greedily from ``model(step) -> logits`` under ``schema`` and ``budget``, as the engine
    does: (the text, tokens used)."""
    matcher = grammars.matcher(grammars.grammar(schema, lenient=False, where="test"))
    sampler = RowSampler(GREEDY, frozenset({tokenizer.eos_token_id}), budget, matcher=matcher, grammars=grammars)
    ids = []
    for step in range(budget):
        token, _ = sampler.pick(model(step))
        if token == tokenizer.eos_token_id:
            break
        ids.append(token)
    return tokenizer.decode(ids), len(ids)


def rambler(tokenizer: Any, words: str, then: str = "1") -> Any:
    """A model that always wants to write ``words`` again; where it cannot, ``then`` (by default
    a digit: more of a number); else punctuation. It never wants to end a value itself."""
    liked = tokenizer(words, add_special_tokens=False)["input_ids"]
    [second] = tokenizer(then, add_special_tokens=False)["input_ids"]

    def logits(step: int) -> torch.Tensor:
        scores = torch.zeros(VOCAB)
        scores[:300] += torch.linspace(1, 0, 300)  # early-vocabulary tokens: punctuation, quotes
        scores[second] = 2.0
        scores[liked[step % len(liked)]] = 5.0
        return scores

    return logits


def random_model(seed: int) -> Any:
    """A model whose favourite token is a fresh random one at every step."""
    generator = torch.Generator().manual_seed(seed)
    return lambda step: torch.randn(VOCAB, generator=generator)


@pytest.mark.parametrize("name", SHORTEST)
def test_the_plan_from_the_start_is_the_shortest_reply(tokenizer: Any, grammars: Grammars, name: str) -> None:
    schema, text = SHORTEST[name]
    matcher = grammars.matcher(grammars.grammar(schema, lenient=False, where="t"))
    game = Endgame.start(grammars.closer, matcher, 10**6)
    assert game.plan is not None and tokenizer.decode(game.plan) == text
    assert len(game.plan) <= len(tokenizer(text, add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("name", SHORTEST)
def test_a_rambler_ends_valid_at_every_budget_that_fits_and_uses_it_all(tokenizer: Any, grammars: Grammars,
                                                                         name: str) -> None:  # fmt: skip
    schema, _ = SHORTEST[name]
    need = shortest(grammars, schema)
    model = rambler(tokenizer, " and then more and more")
    for budget in range(need, need + 16):
        text, used = decode(tokenizer, grammars, schema, budget, model)
        assert valid(name, text) and used == budget, (budget, text)  # it wrote until its budget ran out


def test_a_model_that_likes_brackets_inside_a_string_still_closes_it(tokenizer: Any, grammars: Grammars) -> None:
    # The reserve this replaced (a share of the budget, in which only tokens made of closing
    # characters were allowed) let such a model write "}}}}" inside its string to the end.
    schema, _ = SHORTEST["tools"]
    for budget in (shortest(grammars, schema), 40, 96):
        text, used = decode(tokenizer, grammars, schema, budget, rambler(tokenizer, " sunny", then="}}"))
        assert valid("tools", text) and used == budget, (budget, text)


@pytest.mark.parametrize("name", SHORTEST)
def test_a_random_model_ends_valid_whenever_the_reply_fits(tokenizer: Any, grammars: Grammars, name: str) -> None:
    schema, _ = SHORTEST[name]
    need = shortest(grammars, schema)
    for seed in range(20):
        budget = need + seed * 2
        text, used = decode(tokenizer, grammars, schema, budget, random_model(seed))
        assert used <= budget and valid(name, text), (seed, budget, text)


def test_a_reply_that_cannot_fit_is_left_alone_to_its_budget(tokenizer: Any, grammars: Grammars) -> None:
    schema, _ = SHORTEST["city"]
    need = shortest(grammars, schema)
    model = rambler(tokenizer, " and then more")
    text, used = decode(tokenizer, grammars, schema, need - 1, model)
    assert used == need - 1 and text.startswith('{"city": "') and " and then more" in text, text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


# ----------------------------------------------------------------------------- the real engine


@pytest.fixture(scope="module")
def bpe_server(start_server: StartServer, tiny_bpe_model_dir: Path) -> ServerProcess:
    return start_server(tiny_bpe_model_dir, "--max-batch-size", "8", name="tiny-bpe")


def chat(server: ServerProcess, body: dict[str, Any], *, stream: bool) -> list[dict[str, Any]]:
    """Each choice as {"content", "tool_calls", "finish_reason"}, from a plain or a streamed reply."""
    full = {"model": "tiny-bpe", "messages": [{"role": "user", "content": "Describe Paris."}], **body}
    if not stream:
        r = server.post("/v1/chat/completions", full)
        assert r.status_code == 200, r.text
        return [{"content": c["message"]["content"], "tool_calls": c["message"].get("tool_calls") or [],
                 "finish_reason": c["finish_reason"]} for c in r.json()["choices"]]  # fmt: skip
    r = server.post("/v1/chat/completions", {**full, "stream": True}, stream=True)
    assert r.status_code == 200, r.text
    choices: dict[int, dict[str, Any]] = {}
    for line in r.iter_lines():
        if not line.startswith(b"data: {"):
            continue
        for delta in json.loads(line[6:])["choices"]:
            choice = choices.setdefault(delta["index"], {"content": "", "tool_calls": [], "finish_reason": None})
            choice["content"] += delta["delta"].get("content") or ""
            for part in delta["delta"].get("tool_calls") or []:
                if part["index"] == len(choice["tool_calls"]):
                    choice["tool_calls"].append({"function": {"name": "", "arguments": ""}})
                call = choice["tool_calls"][part["index"]]["function"]
                call["name"] += part.get("function", {}).get("name") or ""
                call["arguments"] += part.get("function", {}).get("arguments") or ""
            choice["finish_reason"] = delta["finish_reason"] or choice["finish_reason"]
    return [choices[i] for i in sorted(choices)]


def json_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_the_engine_ends_every_reply_that_fits_valid(bpe_server: ServerProcess, grammars: Grammars,
                                                     stream: bool) -> None:  # fmt: skip
    for name in ("city", "nested"):
        schema, _ = SHORTEST[name]
        need = shortest(grammars, schema)
        for extra in (0, 7):
            body = {**json_format(schema), "max_tokens": need + extra, "n": 4, "temperature": 1.0, "seed": extra}
            for choice in chat(bpe_server, body, stream=stream):
                assert choice["finish_reason"] == "stop" and valid(name, choice["content"]), (need + extra, choice)
    need = shortest(grammars, SHORTEST["tools"][0])
    tools = [{"type": "function", "function": {"name": f.name, "parameters": f.parameters}} for f in TOOLS.functions]
    body = {"tools": tools, "tool_choice": "required", "max_tokens": need, "n": 4, "temperature": 1.0, "seed": 1}
    for choice in chat(bpe_server, body, stream=stream):
        assert choice["finish_reason"] == "tool_calls" and len(choice["tool_calls"]) == 1, choice
        call = choice["tool_calls"][0]["function"]
        jsonschema.validate(json.loads(call["arguments"]), WEATHER if call["name"] == "get_weather" else TIME)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_the_engine_ends_a_reply_that_cannot_fit_with_length(bpe_server: ServerProcess, grammars: Grammars,
                                                             stream: bool) -> None:  # fmt: skip
    schema, _ = SHORTEST["city"]
    body = {**json_format(schema), "max_tokens": shortest(grammars, schema) - 1, "n": 2, "temperature": 1.0}
    for choice in chat(bpe_server, body, stream=stream):
        assert choice["finish_reason"] == "length", choice
        with pytest.raises(json.JSONDecodeError):
            json.loads(choice["content"])
    tools = [{"type": "function", "function": {"name": f.name, "parameters": f.parameters}} for f in TOOLS.functions]
    body = {"tools": tools, "tool_choice": "required", "max_tokens": shortest(grammars, SHORTEST["tools"][0]) - 1}
    for choice in chat(bpe_server, body, stream=stream):
        assert choice["finish_reason"] == "length" and choice["tool_calls"] == [], choice
