"""The grammar side of tools and response_format, on SmolLM2's real tokenizer: a reply held to
a schema validates whatever the model prefers (how it ends in its token budget:
test_server_grammar_endgame.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch
from transformers import AutoTokenizer

from backends.builtin_server.engine.request import GREEDY
from backends.builtin_server.engine.sampling import RowSampler
from backends.builtin_server.tools.constraints import Grammars, closed, tool_calls_schema
from backends.builtin_server.tools.parsers import PARSERS
from backends.builtin_server.tools.spec import Function, ToolRequest

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
           "required": ["city", "days"]}  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.fixture(scope="module")
def grammars(tokenizer: Any) -> Grammars:
    return Grammars(tokenizer, vocab_size=49152, eos_ids=[tokenizer.eos_token_id])


def decode_greedily(tokenizer: Any, grammars: Grammars, schema: dict[str, Any], budget: int,
                    prefer: str) -> tuple[str, int]:  # fmt: skip
    """A stand-in model that always wants to write ``prefer`` (a rambler), held to ``schema``."""
    matcher = grammars.matcher(grammars.grammar(schema, lenient=False, where="test"))
    sampler = RowSampler(GREEDY, frozenset({tokenizer.eos_token_id}), budget, matcher=matcher, grammars=grammars)
    liked = tokenizer(prefer, add_special_tokens=False)["input_ids"]
    ids = []
    for step in range(budget):
        scores = torch.zeros(49152)
        scores[liked[step % len(liked)]] = 5.0  # what the model would say, if it were free
        scores[:300] += torch.linspace(1, 0, 300)  # otherwise: early-vocabulary tokens (punctuation)
        token, _ = sampler.pick(scores)
        if token == tokenizer.eos_token_id:
            return tokenizer.decode(ids), step
        ids.append(token)
    return tokenizer.decode(ids), budget


def test_a_forced_call_is_a_call_to_an_offered_function_with_valid_arguments(tokenizer: Any,
                                                                              grammars: Grammars) -> None:  # fmt: skip
    tools = ToolRequest((Function("get_weather", None, WEATHER), Function("noop")), choice="required")
    text, _ = decode_greedily(tokenizer, grammars, tool_calls_schema(tools), 64, prefer='{"response": "hi"}')
    parsed = PARSERS["generic"].extract(text, tools)
    assert parsed.content is None and len(parsed.calls) == 1, text
    schema = WEATHER if parsed.calls[0].name == "get_weather" else {"type": "object"}
    jsonschema.validate(parsed.calls[0].arguments_object(), schema)


def test_objects_are_closed_unless_the_schema_opens_them() -> None:
    assert closed({"type": "object", "properties": {"a": {"type": "object", "properties": {}}}}) == {
        "type": "object", "additionalProperties": False,
        "properties": {"a": {"type": "object", "properties": {}, "additionalProperties": False}}}  # fmt: skip
    assert closed({"type": "object", "additionalProperties": True})["additionalProperties"] is True
    assert closed({"anyOf": [{"type": "object"}]})["anyOf"][0]["additionalProperties"] is False


def test_a_schema_that_cannot_be_enforced_is_a_400_naming_the_field(grammars: Grammars) -> None:
    from backends.builtin_server.errors import ApiError

    with pytest.raises(ApiError) as err:
        grammars.grammar({"type": "object", "properties": {"a": {"type": "nonsense"}}}, lenient=False,
                         where="response_format.json_schema.schema")  # fmt: skip
    assert err.value.status == 400 and "response_format.json_schema.schema" in err.value.message
