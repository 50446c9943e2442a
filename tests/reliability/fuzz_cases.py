"""Hypothesis strategies for the fuzz: HTTP requests to the built-in server, valid and broken.

A :class:`Case` is one request. Most start from a body a client could validly send to a
generation route and then get one to three mutations (a field removed, given a value of another
type, made huge, given odd Unicode or a lone surrogate, or an unknown key added), so they reach
deep into validation and, when they stay valid, into the scheduler. The rest are random JSON,
bytes that are not JSON (truncated, deeply nested, another encoding, over the 32 MiB cap), wrong
methods, odd content types and random paths. Generation stays cheap: valid bodies ask for at
most 4 new tokens and the fuzzed server caps requests at 16 (``--max-new-tokens-limit``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from tests.tiny_model import VOCABULARY

MODEL = "fuzz"
GENERATION_ROUTES = ("/llm/", "/v1/chat/completions", "/v1/completions", "/v1/messages", "/v1/messages/count_tokens",
                     "/v1/responses")  # fmt: skip
# An embed or rerank server's routes (tests/reliability/test_fuzz.py fuzzes those servers too; on
# a server of another task they are 400s naming the task).
POOLING_ROUTES = ("/v1/embeddings", "/v1/rerank", "/rerank")
READ_ROUTES = ("/v1/models", "/health", "/metrics")
ROUTES = GENERATION_ROUTES + POOLING_ROUTES + READ_ROUTES
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "PROPFIND", "BREW")
CONTENT_TYPES = (
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=utf-16",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=fuzz",
    "application/octet-stream",
    "",
    None,
)
MAX_BODY = 32 * 1024 * 1024  # the server's MAX_CONTENT_LENGTH


@dataclass(frozen=True)
class Case:
    kind: str  # what sort of case, for the summary and a failure's report
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False  # send the body with Transfer-Encoding: chunked

    def __repr__(self) -> str:
        # Bodies can be megabytes; a failure report needs the start of it and its size.
        body = "None" if self.body is None else f"{self.body[:300]!r}{'...' if len(self.body) > 300 else ''} ({len(self.body)} bytes)"
        return (f"Case(kind={self.kind!r}, method={self.method!r}, path={self.path!r}, headers={self.headers!r}, "
                f"chunked={self.chunked}, body={body})")  # fmt: skip

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # what Hypothesis prints for a failing case: the short form too


# ----------------------------------------------------------------------------- values

words = st.lists(st.sampled_from(VOCABULARY.split()), min_size=1, max_size=12).map(" ".join)
surrogate = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
odd_text = st.one_of(
    st.text(max_size=40),  # any Unicode: other scripts, emoji, controls, NUL
    st.builds(lambda a, s, b: a + s + b, st.text(max_size=5), surrogate, st.text(max_size=5)),
    st.sampled_from(["", " ", "\x00", "\u202e", "\ufeff", "<|im_start|>", "<|im_end|>", "{{ 7*7 }}", "{% raw %}"]),
)
text = st.one_of(words, odd_text)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-(2**80), 2**80),
                    st.floats(allow_nan=True, allow_infinity=True), text)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
# Builders, not values: a mutation may later edit what it inserted, and must not edit a shared constant.
huge = st.sampled_from([
    lambda: "hello " * 20_000, lambda: "a" * 1_000_000, lambda: 10**4000, lambda: -(10**4000), lambda: 1e308,
    lambda: 5e-324, lambda: list(range(10_000)), lambda: {str(i): i for i in range(10_000)},
    lambda: [[[[[[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]]]]], lambda: [{"role": "user", "content": "hi"} for _ in range(5_000)],
]).map(lambda build: build())  # fmt: skip


# ----------------------------------------------------------------------------- valid bodies

TOOL = {"type": "function", "function": {"name": "get_weather", "description": "the weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}  # fmt: skip
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "paris"}'}}
content = st.one_of(text, st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": text}), min_size=1, max_size=2))
message = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "developer", "assistant"]), "content": content},
                          optional={"name": st.sampled_from(["alice", "bob"])}),
    st.just({"role": "assistant", "content": None, "tool_calls": [CALL]}),
    st.fixed_dictionaries({"role": st.just("tool"), "content": content, "tool_call_id": st.just("call_1")}),
)  # fmt: skip
messages = st.lists(message, min_size=1, max_size=3).map(lambda ms: [*ms, {"role": "user", "content": "hello"}])
few_tokens = st.integers(1, 4)
stop = st.sampled_from(VOCABULARY.split()) | st.lists(st.sampled_from(VOCABULARY.split()), min_size=1, max_size=3)
OPENAI_OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    "temperature": st.sampled_from([0.0, 0.7, 1.0, 2.0]) | st.floats(0.0, 2.0),
    "top_p": st.floats(0.01, 1.0),
    "n": st.integers(1, 2),
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
    "stop": stop,
    "top_k": st.integers(-1, 50),
    "repetition_penalty": st.floats(0.5, 2.0),
    "min_tokens": st.integers(0, 2),
    "seed": st.integers(-(2**63), 2**64),
    "user": text,
    "metadata": st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
    "presence_penalty": st.floats(-2.0, 2.0),
    "frequency_penalty": st.floats(-2.0, 2.0),
    "logit_bias": st.dictionaries(st.integers(0, 10**6).map(str), st.integers(-100, 100), max_size=3),
    "service_tier": st.sampled_from(["auto", "default"]),
    "store": st.just(False),
}
CHAT_OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    **OPENAI_OPTIONAL,
    "max_completion_tokens": few_tokens,
    "logprobs": st.booleans(),
    "top_logprobs": st.integers(0, 20),
    "response_format": st.sampled_from([
        {"type": "text"}, {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "reply", "strict": True, "schema": {
            "type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}}},
    ]),  # fmt: skip
    "tools": st.just([TOOL]),
    "tool_choice": st.sampled_from(["auto", "none", "required", {"type": "function", "function": {"name": "get_weather"}}]),
    "parallel_tool_calls": st.booleans(),
    "modalities": st.just(["text"]),
}
COMPLETION_OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    **OPENAI_OPTIONAL, "logprobs": st.integers(0, 5), "echo": st.just(False), "best_of": st.just(1),
}  # fmt: skip
LLM_OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    "max_length": st.integers(1, 300),
    "min_new_tokens": st.integers(0, 2),
    "do_sample": st.booleans(),
    "temperature": st.floats(0.0, 2.0),
    "top_p": st.floats(0.01, 1.0),
    "top_k": st.integers(0, 50),
    "repetition_penalty": st.floats(0.5, 2.0),
}


# Anthropic Messages and OpenAI Responses (surfaces/): their own shapes of the same conversation.
ANTHROPIC_TOOL = {"name": "get_weather", "description": "the weather in a city", "input_schema": TOOL["function"]["parameters"]}
USE = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "paris"}}
blocks = st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": text}), min_size=1, max_size=2)
anthropic_turn = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": text | blocks}),
    st.just({"role": "assistant", "content": [USE]}),
    st.builds(lambda t: {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": t}]},
              text | blocks),
)  # fmt: skip
anthropic_messages = st.lists(anthropic_turn, max_size=3).map(lambda ms: [*ms, {"role": "user", "content": "hello"}])
ANTHROPIC_CONVERSATION: dict[str, st.SearchStrategy[Any]] = {
    "system": text | blocks,
    "tools": st.just([ANTHROPIC_TOOL]),
    "tool_choice": st.sampled_from([{"type": "auto"}, {"type": "any"}, {"type": "none"},
                                    {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}]),
    "thinking": st.just({"type": "disabled"}),
}  # fmt: skip
MESSAGES_OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    **ANTHROPIC_CONVERSATION,
    "temperature": st.floats(0.0, 1.0),
    "top_p": st.floats(0.01, 1.0),
    "top_k": st.integers(0, 50),
    "stop_sequences": st.lists(st.sampled_from(VOCABULARY.split()), min_size=1, max_size=3),
    "stream": st.booleans(),
    "metadata": st.fixed_dictionaries({"user_id": text}),
}
FUNCTION = {"type": "function", **TOOL["function"]}
item = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "developer", "assistant"]), "content": text}),
    st.builds(lambda t: {"type": "message", "role": "user", "content": [{"type": "input_text", "text": t}]}, text),
    st.just({"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "paris"}'}),
    st.builds(lambda t: {"type": "function_call_output", "call_id": "call_1", "output": t}, text),
)
RESPONSES_OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    "instructions": text,
    "temperature": st.floats(0.0, 2.0),
    "top_p": st.floats(0.01, 1.0),
    "tools": st.just([FUNCTION]),
    "tool_choice": st.sampled_from(["auto", "none", "required", {"type": "function", "name": "get_weather"}]),
    "parallel_tool_calls": st.booleans(),
    "text": st.sampled_from([{"format": {"type": "text"}}, {"format": {"type": "json_object"}},
                             {"format": {"type": "json_schema", "name": "reply", "strict": True, "schema": {
                                 "type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}}}]),
    "stream": st.booleans(),
    "store": st.booleans(),
    "previous_response_id": st.just("resp_unknown"),
    "metadata": st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
    "user": text,
}  # fmt: skip


@st.composite
def _with_optional(draw: st.DrawFn, required: dict[str, Any], optional: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    body = dict(required)
    for key in draw(st.lists(st.sampled_from(sorted(optional)), unique=True, max_size=5)):
        body[key] = draw(optional[key])
    return body


token_ids = st.lists(st.integers(0, 30_000), min_size=1, max_size=8)
EMBED_OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    "encoding_format": st.sampled_from(["float", "base64"]),
    "dimensions": st.sampled_from([384, 8]) | st.integers(0, 1000),
    "user": text,
}
RERANK_OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    "top_n": st.integers(0, 5),
    "return_documents": st.booleans(),
    "user": text,
}


@st.composite
def valid_body(draw: st.DrawFn, route: str) -> dict[str, Any]:
    if route == "/v1/embeddings":
        given = draw(st.one_of(words, st.lists(words, min_size=1, max_size=4), token_ids,
                               st.lists(token_ids, min_size=1, max_size=3)))  # fmt: skip
        return draw(_with_optional({"model": MODEL, "input": given}, EMBED_OPTIONAL))
    if route in ("/v1/rerank", "/rerank"):
        documents = st.lists(words | st.fixed_dictionaries({"text": words}), min_size=1, max_size=4)
        return draw(_with_optional({"model": MODEL, "query": draw(words), "documents": draw(documents)},
                                   RERANK_OPTIONAL))  # fmt: skip
    if route == "/v1/chat/completions":
        required = {"model": MODEL, "messages": draw(messages), "max_tokens": draw(few_tokens)}
        return draw(_with_optional(required, CHAT_OPTIONAL))
    if route == "/v1/messages":
        required = {"model": MODEL, "messages": draw(anthropic_messages), "max_tokens": draw(few_tokens)}
        return draw(_with_optional(required, MESSAGES_OPTIONAL))
    if route == "/v1/messages/count_tokens":
        return draw(_with_optional({"model": MODEL, "messages": draw(anthropic_messages)}, ANTHROPIC_CONVERSATION))
    if route == "/v1/responses":
        inputs = draw(text | st.lists(item, max_size=3).map(lambda items: [*items, {"role": "user", "content": "hello"}]))
        return draw(_with_optional({"model": MODEL, "input": inputs, "max_output_tokens": draw(few_tokens)},
                                   RESPONSES_OPTIONAL))  # fmt: skip
    if route == "/v1/completions":
        prompt = draw(text | st.lists(words, min_size=1, max_size=1))
        return draw(_with_optional({"model": MODEL, "prompt": prompt, "max_tokens": draw(few_tokens)}, COMPLETION_OPTIONAL))
    chat_key = draw(st.sampled_from(["messages", "inputs"]))
    return draw(_with_optional({chat_key: draw(messages), "max_new_tokens": draw(few_tokens)}, LLM_OPTIONAL))


# ----------------------------------------------------------------------------- mutations


def _paths(value: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every place inside ``value`` a mutation can hit: dict keys and list indices, at any depth."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield (*prefix, key)
        yield from _paths(item, (*prefix, key))


def _parent(body: Any, path: tuple[str | int, ...]) -> Any:
    for key in path[:-1]:
        body = body[key]
    return body


@st.composite
def mutated_body(draw: st.DrawFn, route: str) -> dict[str, Any]:
    body = json.loads(json.dumps(draw(valid_body(route))))  # a private deep copy
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(body))
        path = draw(st.sampled_from(paths)) if paths else None
        operation = draw(st.sampled_from(["remove", "replace", "huge", "text", "add"] if path else ["add"]))
        if operation == "add":
            target = _parent(body, path) if path else body
            if isinstance(target, dict):
                target[draw(st.sampled_from(["modle", "prompt", "messages", "max_tokens", "extra"]) | text)] = draw(json_values)
            continue
        assert path is not None
        parent, key = _parent(body, path), path[-1]
        if operation == "remove":
            del parent[key]
        else:
            parent[key] = draw({"replace": json_values, "huge": huge, "text": odd_text}[operation])
    return body


# ----------------------------------------------------------------------------- bytes on the wire


@st.composite
def encoded(draw: st.DrawFn, body: Any) -> bytes:
    """JSON text as a client might send it: escaped or raw UTF-8 (lone surrogates raw too), or UTF-16."""
    raw = json.dumps(body, ensure_ascii=draw(st.booleans()))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16"]))
    return raw.encode(encoding, "surrogatepass")


not_json = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=100).map(lambda t: t.encode()),
    st.sampled_from([b"", b"   ", b"null", b"[]", b"42", b'"text"', b"NaN", b"{", b'{"model": ', b"{}{}", b"\xff\xfe",
                     b'{"max_tokens": ' + b"9" * 5000 + b"}", b"\xef\xbb\xbf{}"]),  # fmt: skip
    st.integers(1, 200_000).flatmap(lambda n: st.sampled_from([b"[" * n + b"]" * n, b'{"a":' * n + b"1" + b"}" * n])),
    st.just(b" " * (MAX_BODY + 1)),
)


@st.composite
def truncated(draw: st.DrawFn, route: str) -> bytes:
    raw = json.dumps(draw(valid_body(route))).encode()
    return raw[: draw(st.integers(0, len(raw) - 1))]


headers = st.builds(
    lambda ctype, extra: ({} if ctype is None else {"Content-Type": ctype}) | extra,
    st.sampled_from(CONTENT_TYPES),
    st.dictionaries(st.sampled_from(["Accept", "Authorization", "X-Request-Id", "Accept-Encoding"]),
                    # HTTP header values: printable ASCII, no leading space (requests refuses to send one).
                    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30).map(str.lstrip),
                    max_size=2),
)  # fmt: skip
json_headers = st.just({"Content-Type": "application/json"}) | headers
path_chars = st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="#?%")
random_path = st.one_of(
    st.text(path_chars, max_size=30).map(lambda t: "/" + t),
    st.sampled_from(["/llm", "/v1/chat/completions/", "//v1/models", "/v1/models/fuzz", "/v1/", "/", "/%00",
                     "/v1/%ff%fe", "/llm/?x=1", "/health?full=1", "/v1/models?limit=-1", "/" + "a" * 5000]),  # fmt: skip
)


def _case(kind: str, method: str, path: str) -> Any:
    def build(body: bytes | None, heads: dict[str, str], chunked: bool) -> Case:
        return Case(kind=kind, method=method, path=path, body=body, headers=heads, chunked=chunked and body is not None)

    return build


def _shown_short(strategy: st.SearchStrategy[Case]) -> st.SearchStrategy[Case]:
    """The same cases, reported by Case's short repr: Hypothesis would otherwise print the
    arguments of st.builds in full, a 32 MiB body included."""

    @st.composite
    def draw_case(draw: st.DrawFn) -> Case:
        return draw(strategy)

    return draw_case()


def route_cases(routes: tuple[str, ...]) -> st.SearchStrategy[Case]:
    """Requests whose valid and mutated bodies are for ``routes`` (the server's own); random JSON,
    wrong methods and odd paths go to every route (the others answer 400 naming the task)."""
    route = st.sampled_from(routes)
    valid = route.flatmap(lambda r: st.builds(_case("valid", "POST", r), valid_body(r).flatmap(encoded),
                                              st.just({"Content-Type": "application/json"}), st.just(False)))
    mutated = route.flatmap(lambda r: st.builds(_case("mutated", "POST", r), mutated_body(r).flatmap(encoded),
                                                json_headers, st.booleans()))
    random_json = st.sampled_from(ROUTES).flatmap(lambda r: st.builds(_case("random-json", "POST", r),
                                                                      json_values.flatmap(encoded), json_headers, st.booleans()))
    broken = route.flatmap(lambda r: st.builds(_case("not-json", "POST", r), not_json | truncated(r), headers,
                                               st.booleans()))
    method = st.tuples(st.sampled_from(METHODS), st.sampled_from(ROUTES)).flatmap(
        lambda mr: st.builds(_case("method", *mr), st.none() | not_json | route.flatmap(
            lambda r: valid_body(r).flatmap(encoded)), headers, st.booleans()))
    path = st.tuples(st.sampled_from(METHODS), random_path).flatmap(
        lambda mp: st.builds(_case("path", *mp), st.none() | json_values.flatmap(encoded), headers, st.just(False)))
    # Valid and mutated bodies come most often: they are the ones that get past parsing.
    return _shown_short(st.one_of(valid, mutated, mutated, random_json, broken, method, path))


cases = route_cases(GENERATION_ROUTES)
pooling_cases = route_cases(POOLING_ROUTES)
