"""Constrained decoding: a grammar per request row decides which tokens may come next.

llguidance compiles a JSON schema (or JSON itself) into a matcher over the model's vocabulary;
before every decoding step each constrained row's matcher fills a bitmask and the disallowed
tokens' logits become -inf. Rows without a constraint share the batch untouched, so a
constrained request and a free one can be decoded together. Measured on this CPU with SmolLM2's
49k-token vocabulary: compiling a tool-call schema takes ~1 ms, a mask ~0.1-0.3 ms per token
(the forward pass takes ~40 ms). xgrammar was as fast (0.2 ms) but needs triton, a 1 GB package
of GPU kernels, on a CPU-only machine; llguidance has no dependencies.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import llguidance
import llguidance.hf
import llguidance.torch as llg_torch
import torch

from backends.builtin_server.errors import ApiError
from backends.builtin_server.tools.endgame import Closer
from backends.builtin_server.tools.spec import ResponseFormat, ToolRequest

# Compact JSON (", " and ": " as json.dumps writes them) and no free whitespace: a small model
# given the choice pads with newlines until it runs out of tokens.
JSON_OPTIONS: dict[str, Any] = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
# Parallel calls allowed: at most this many in one reply, so a model that repeats itself ends.
MAX_PARALLEL_CALLS = 4
_SUBSCHEMAS = ("items", "additionalItems", "not", "if", "then", "else", "contains")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")


def closed(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` wherever an object schema leaves it out.

    JSON Schema allows unlisted keys by default, and a small model fills that room with copies of
    the schema itself. vLLM's grammar engine (xgrammar, strict mode) closes objects the same way;
    a schema that wants extra keys says so and keeps them.
    """
    if not isinstance(schema, dict):
        return schema
    out = {key: closed(value) if key in _SUBSCHEMAS else value for key, value in schema.items()}
    for key in _SCHEMA_LISTS:
        if isinstance(schema.get(key), list):
            out[key] = [closed(s) for s in schema[key]]
    for key in _SCHEMA_MAPS:
        if isinstance(schema.get(key), dict):
            out[key] = {name: closed(s) for name, s in schema[key].items()}
    if (schema.get("type") == "object" or "properties" in schema) and "additionalProperties" not in schema:
        out["additionalProperties"] = False
    return out


def tool_calls_schema(tools: ToolRequest) -> dict[str, Any]:
    """The generic reply: ``{"tool_calls": [...]}`` (forced), or that or ``{"response": "..."}`` (auto)."""
    one_of_each = [
        {"type": "object", "properties": {"name": {"const": f.name}, "arguments": closed(f.parameters)},
         "required": ["name", "arguments"], "additionalProperties": False}
        for f in tools.callable()
    ]  # fmt: skip
    # One call unless the client asked for parallel calls: OpenAI's default is true, but llama.cpp's
    # generic handler defaults to false, and a small model given room repeats its call to the end.
    calls: dict[str, Any] = {"type": "array", "items": {"anyOf": one_of_each}, "minItems": 1,
                             "maxItems": MAX_PARALLEL_CALLS if tools.parallel else 1}  # fmt: skip
    forced = {"type": "object", "properties": {"tool_calls": calls}, "required": ["tool_calls"],
              "additionalProperties": False}  # fmt: skip
    if tools.forced:
        return forced
    answer = {"type": "object", "properties": {"response": {"type": "string"}}, "required": ["response"],
              "additionalProperties": False}  # fmt: skip
    return {"anyOf": [forced, answer]}


def response_schema(fmt: ResponseFormat) -> dict[str, Any]:
    if fmt.kind == "json_schema" and fmt.schema is not None:
        result: dict[str, Any] = closed(fmt.schema)
        return result
    return {"type": "object"}


class Grammars:
    """Grammars for one model's vocabulary, compiled once per distinct schema."""

    def __init__(self, tokenizer: Any, *, vocab_size: int, eos_ids: Sequence[int]) -> None:
        self.vocab_size = vocab_size
        self._hf_tokenizer = tokenizer
        self._eos_ids = sorted(eos_ids)
        self._tokenizer: llguidance.LLTokenizer | None = None
        self._compiled: dict[str, str] = {}
        self._closer: Closer | None = None
        self._bitmask: torch.Tensor | None = None  # one row's, reused (only the scheduler thread masks)

    @property
    def closer(self) -> Closer:
        """Closing plans for the endgame, over this vocabulary (built on first use)."""
        if self._closer is None:
            self._closer = Closer(self.tokenizer)
        return self._closer

    @property
    def tokenizer(self) -> llguidance.LLTokenizer:
        """The vocabulary as llguidance sees it, built on first use (~0.3 s): a server whose clients
        never ask for tools or JSON never pays for it, nor fails on a tokenizer it cannot read."""
        if self._tokenizer is None:
            try:
                self._tokenizer = llguidance.hf.from_tokenizer(self._hf_tokenizer, n_vocab=self.vocab_size,
                                                               eos_token=self._eos_ids)  # fmt: skip
            except (ValueError, TypeError) as exc:
                raise ApiError(400, f"this model's tokenizer cannot be used for constrained decoding ({exc}), so "
                                    "tools and response_format are not available; leave them out") from None  # fmt: skip
        return self._tokenizer

    def grammar(self, schema: dict[str, Any], *, lenient: bool, where: str) -> str:
        """A checked grammar for ``schema``; a 400 naming ``where`` when it cannot be enforced."""
        key = json.dumps([schema, lenient], sort_keys=True)
        if key not in self._compiled:
            options = {**JSON_OPTIONS, "lenient": lenient}
            try:
                grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, overrides=options)  # type: ignore[arg-type]
            except ValueError as exc:
                raise ApiError(400, f"{where} is not a JSON schema this server can enforce: {exc}") from None
            error = llguidance.LLMatcher.validate_grammar(grammar, self.tokenizer)
            if error:
                raise ApiError(400, f"{where} is not a JSON schema this server can enforce: {error}")
            self._compiled[key] = grammar
        return self._compiled[key]

    def matcher(self, grammar: str) -> llguidance.LLMatcher:
        return llguidance.LLMatcher(self.tokenizer, grammar, log_level=0)

    def mask(self, matcher: llguidance.LLMatcher, scores: torch.Tensor) -> None:
        """Set the logits (one row, vocab) of every token ``matcher`` forbids next to -inf."""
        if self._bitmask is None:
            self._bitmask = llg_torch.allocate_token_bitmask(1, self.vocab_size)
        llg_torch.fill_next_token_bitmask(matcher, self._bitmask, 0)
        row = scores.view(1, -1)
        llg_torch.apply_token_bitmask_inplace(row, self._bitmask[:, : (row.shape[-1] + 31) // 32])
