"""Every kind of response the built-in server sends validates against OpenAI's own published
schemas (tests/fixtures/openai/schemas.json, vendored by tests/openai_schema.py): plain chat
completions (with n, logprobs and tool calls), stream chunks, completions, the model list, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.openai_schema import problems
from tests.servers import ServerProcess, StartServer

pytestmark = pytest.mark.e2e

USER = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}  # fmt: skip


def chunks_of(server: ServerProcess, path: str, body: dict[str, Any]) -> list[Any]:
    r = server.post(path, {**body, "stream": True}, stream=True)
    assert r.status_code == 200, r.text
    events = [line.decode()[len("data: ") :] for line in r.iter_lines() if line.startswith(b"data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def assert_valid(kind: str, body: Any) -> None:
    found = problems(kind, body)
    assert not found, f"{kind} breaks OpenAI's schema:\n" + "\n".join(found) + f"\n{json.dumps(body)[:2000]}"


@pytest.fixture(scope="module")
def smol(start_server: StartServer, smollm2_dir: Path) -> ServerProcess:
    """The real model: the tiny test model's tokenizer cannot drive the grammar tools need."""
    return start_server(smollm2_dir, name="smol")


CHAT_BODIES = {
    "plain": {"max_tokens": 6},
    "n-logprobs": {"max_tokens": 4, "n": 2, "temperature": 1.0, "seed": 3, "logprobs": True, "top_logprobs": 2},
    "tool-call": {"max_tokens": 40, "tools": [WEATHER], "tool_choice": "required"},
    "json": {"max_tokens": 30, "response_format": {"type": "json_object"}},
}


@pytest.mark.parametrize("extra", CHAT_BODIES.values(), ids=CHAT_BODIES.keys())
def test_chat_completions_and_their_stream_chunks(smol: ServerProcess, extra: dict[str, Any]) -> None:
    body = {"model": "smol", "messages": USER, **extra}
    r = smol.post("/v1/chat/completions", body)
    assert r.status_code == 200, r.text
    assert_valid("chat", r.json())
    chunks = chunks_of(smol, "/v1/chat/completions", {**body, "stream_options": {"include_usage": True}})
    for chunk in chunks:
        assert_valid("chat_chunk", chunk)
    if "tools" in extra:
        assert r.json()["choices"][0]["message"]["tool_calls"], r.text  # the call itself was validated
        assert any(c["choices"] and c["choices"][0]["delta"].get("tool_calls") for c in chunks)


@pytest.mark.parametrize("extra", [{}, {"logprobs": 2, "n": 2, "temperature": 1.0}], ids=["plain", "n-logprobs"])
def test_completions_plain_and_streamed(tiny_server: ServerProcess, extra: dict[str, Any]) -> None:
    body = {"model": "tiny", "prompt": "Once upon a time", "max_tokens": 5, **extra}
    r = tiny_server.post("/v1/completions", body)
    assert r.status_code == 200, r.text
    assert_valid("completion", r.json())
    chunks = chunks_of(tiny_server, "/v1/completions", {**body, "stream_options": {"include_usage": True}})
    for chunk in chunks:
        # OpenAI documents a streamed completion as this same object, whose finish_reason may not
        # be null; its API (and vLLM) send null until a choice ends, and so do we. That is the
        # only departure allowed.
        left = [p for p in problems("completion", chunk)
                if not (p.endswith("finish_reason: None is not of type 'string'") or
                        p.endswith("finish_reason: None is not one of ['stop', 'length', 'content_filter']"))]  # fmt: skip
        assert left == [], (left, chunk)
    # Each choice ends exactly once, in its own last chunk. With n=2 at temperature 1 the tiny
    # model may sample its end token, so "stop" is as right as "length" here.
    ends: dict[int, list[Any]] = {}
    for c in chunks:
        for choice in c["choices"]:
            ends.setdefault(choice["index"], []).append(choice["finish_reason"])
    assert sorted(ends) == list(range(body.get("n", 1)))
    for reasons in ends.values():
        assert reasons[-1] in ("length", "stop") and all(r is None for r in reasons[:-1]), reasons


def test_cached_tokens_are_reported_in_openais_usage_shape(smol: ServerProcess) -> None:
    """A prompt sent twice: the second time its prefix comes from the cache, and usage says how
    much (prompt_tokens_details.cached_tokens), plain and in the stream's usage chunk."""
    long = [{"role": "user", "content": "Tell me three things about the Eiffel Tower in Paris. " * 4}]
    body = {"model": "smol", "messages": long, "max_tokens": 3, "temperature": 0}
    first = smol.post("/v1/chat/completions", body).json()
    again = smol.post("/v1/chat/completions", body).json()
    assert_valid("chat", again)
    usage = again["usage"]
    # The first time only the chat template's default system prompt can have been seen before.
    assert first["usage"]["prompt_tokens_details"]["cached_tokens"] < usage["prompt_tokens_details"]["cached_tokens"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == (usage["prompt_tokens"] - 1) // 16 * 16
    chunks = chunks_of(smol, "/v1/chat/completions", {**body, "stream_options": {"include_usage": True}})
    for chunk in chunks:
        assert_valid("chat_chunk", chunk)
    assert chunks[-1]["usage"]["prompt_tokens_details"] == usage["prompt_tokens_details"]
    prompt = {"model": "smol", "prompt": long[0]["content"], "max_tokens": 3, "temperature": 0}
    smol.post("/v1/completions", prompt)
    completion = smol.post("/v1/completions", prompt).json()
    assert_valid("completion", completion)
    assert completion["usage"]["prompt_tokens_details"]["cached_tokens"] > 0


def test_model_list(tiny_server: ServerProcess) -> None:
    assert_valid("models", tiny_server.get("/v1/models").json())


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("post", "/v1/chat/completions", {"model": "tiny", "messages": USER, "n": "x"}, 400),
        ("post", "/v1/chat/completions", {"model": "gpt-4", "messages": USER}, 404),
        ("post", "/v1/completions", {"model": "tiny", "prompt": "x", "logprobs": 9}, 400),
        ("get", "/v1/nope", None, 404),
        ("get", "/v1/chat/completions", None, 405),
    ],
)
def test_errors(tiny_server: ServerProcess, method: str, path: str, body: Any, status: int) -> None:
    r = tiny_server.post(path, body) if method == "post" else tiny_server.get(path)
    assert r.status_code == status
    assert_valid("error", r.json())


def test_the_validator_catches_what_round_one_sent() -> None:
    # Round one's shapes (issue 12): no `param`, a numeric `code`; a message without `refusal`.
    assert problems("error", {"error": {"message": "m", "type": "invalid_request_error", "code": 400}})
    message = {"role": "assistant", "content": "hi"}
    chat = {"id": "x", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}]}  # fmt: skip
    assert any("refusal" in p for p in problems("chat", chat))
    message["refusal"] = None  # nullable: OpenAPI's `nullable: true` becomes a null alternative
    assert problems("chat", chat) == []
