"""Anthropic Messages and OpenAI Responses on the built-in server's Flask app, in-process on the
fake engine of tests/fake_engine.py: routes, each surface's error shape, x-api-key, stream framing,
previous_response_id. The real model and the real SDKs: tests/e2e/test_surfaces.py."""

from __future__ import annotations

import json
from concurrent.futures import Future
from typing import Any

import pytest
from flask.testing import FlaskClient

from backends.builtin_server.engine.jobs import Choice, Completion
from backends.builtin_server.engine.request import GenerationRequest
from backends.builtin_server.http.app import create_app
from tests import anthropic_types
from tests.fake_engine import FakeEngine
from tests.openai_schema import event_problems, problems

ASK = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture()
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture()
def client(engine: FakeEngine) -> FlaskClient:
    return create_app(engine, served_name="m").test_client()  # type: ignore[arg-type]


def events(body: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_messages_answer_and_stream_in_anthropic_shapes(client: FlaskClient, engine: FakeEngine) -> None:
    r = client.post("/v1/messages", json={**ASK, "system": "Be brief.", "metadata": {"user_id": "u"}})
    assert r.status_code == 200 and r.json is not None and anthropic_types.problems("message", r.json) == []
    assert {k: r.json[k] for k in ("type", "role", "model", "content", "stop_reason", "stop_sequence")} == {
        "type": "message", "role": "assistant", "model": "m", "content": [{"type": "text", "text": "hello"}],
        "stop_reason": "end_turn", "stop_sequence": None}  # fmt: skip
    assert r.json["usage"] == {"input_tokens": 3, "cache_read_input_tokens": 0, "output_tokens": 1}
    sent = engine.requests[-1]
    assert [m.role for m in sent.messages] == ["system", "user"] and sent.budget.max_new_tokens == 8
    r = client.post("/v1/messages", json={**ASK, "stream": True})
    got = events(r.get_data(as_text=True))
    assert [p for _, data in got for p in anthropic_types.problems("event", data)] == []
    assert [name for name, _ in got] == ["message_start", "ping", "content_block_start", "content_block_delta",
                                         "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    assert got[0][1]["message"]["usage"] == {"input_tokens": 3, "output_tokens": 0}  # known before any token
    assert got[-2][1] == {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                          "usage": {"output_tokens": 2}}  # fmt: skip
    r.close()


def test_the_stop_string_that_ended_a_reply_is_its_stop_sequence(engine: FakeEngine) -> None:
    def submit(request: GenerationRequest) -> Future[Completion]:
        future: Future[Completion] = Future()
        future.set_result(Completion(3, (Choice("hello", 2, "stop", stop="END"),)))
        return future

    engine.submit = submit  # type: ignore[method-assign]
    stopping = create_app(engine, served_name="m").test_client()  # type: ignore[arg-type]
    r = stopping.post("/v1/messages", json={**ASK, "stop_sequences": ["END"]})
    assert r.json is not None and (r.json["stop_reason"], r.json["stop_sequence"]) == ("stop_sequence", "END")
    chat = stopping.post("/v1/chat/completions", json={"model": "m", "messages": ASK["messages"], "stop": ["END"]})
    assert chat.json is not None and chat.json["choices"][0]["stop_reason"] == "END"  # as vLLM reports it


def test_count_tokens(client: FlaskClient, engine: FakeEngine) -> None:
    r = client.post("/v1/messages/count_tokens", json={"model": "m", "messages": ASK["messages"]})
    assert (r.status_code, r.json) == (200, {"input_tokens": 3})
    assert engine.requests[-1].budget.max_new_tokens == 1


def test_errors_are_in_each_surfaces_shape(client: FlaskClient) -> None:
    cases = [("/v1/messages", {**ASK, "model": "other"}, 404, "not_found_error"),
             ("/v1/messages", {**ASK, "thinking": {"type": "enabled", "budget_tokens": 9}}, 400, "invalid_request_error"),
             ("/v1/messages", {**ASK, "max_tokens": 10**6}, 400, "invalid_request_error"),
             ("/v1/messages/count_tokens", {**ASK}, 400, "invalid_request_error")]  # fmt: skip
    for path, body, status, kind in cases:
        r = client.post(path, json=body)
        assert r.status_code == status and r.json is not None and anthropic_types.problems("error", r.json) == [], r.json
        assert r.json["error"]["type"] == kind and r.json["error"]["message"]
    assert "max_tokens must be <=" in client.post("/v1/messages", json={**ASK, "max_tokens": 10**6}).json["error"]["message"]  # type: ignore[index]
    r = client.get("/v1/messages")
    assert r.status_code == 405 and r.json is not None and r.json["error"]["type"] == "invalid_request_error"
    r = client.post("/v1/responses", json={"model": "m", "input": "hi", "max_output_tokens": 10**6})
    assert r.status_code == 400 and r.json is not None and problems("error", r.json) == []
    assert r.json["error"]["message"].startswith("max_output_tokens must be <=")  # the surface's own field name
    r = client.post("/v1/responses", json={"model": "m", "input": "hi", "tools": [{"type": "web_search"}]})
    assert r.status_code == 400 and r.json is not None and r.json["error"]["param"] == "tools[0].type"


def test_x_api_key_is_checked_like_the_bearer_key(engine: FakeEngine) -> None:
    keyed = create_app(engine, served_name="m", api_key="k").test_client()  # type: ignore[arg-type]
    r = keyed.post("/v1/messages", json=ASK)
    assert r.status_code == 401 and r.json == {"type": "error", "error": {"type": "authentication_error", "message":
                                               "missing or wrong API key: send Authorization: Bearer <key> (or x-api-key)"}}  # fmt: skip
    assert keyed.post("/v1/messages", json=ASK, headers={"x-api-key": "wrong"}).status_code == 401
    assert keyed.post("/v1/messages", json=ASK, headers={"x-api-key": "k", "anthropic-version": "2023-06-01"}).status_code == 200
    assert keyed.post("/v1/messages", json=ASK, headers={"Authorization": "Bearer k"}).status_code == 200
    r = keyed.post("/v1/responses", json={"model": "m", "input": "hi"})
    assert r.status_code == 401 and r.json is not None and r.json["error"]["type"] == "authentication_error"


def test_responses_plain_stream_and_previous_response_id(client: FlaskClient, engine: FakeEngine) -> None:
    r = client.post("/v1/responses", json={"model": "m", "input": "hi", "instructions": "Be brief."})
    assert r.status_code == 200 and r.json is not None and problems("response", r.json) == []
    assert r.json["output"][0]["content"][0]["text"] == "hello" and r.json["status"] == "completed"
    first = r.json["id"]
    r = client.post("/v1/responses", json={"model": "m", "input": "and?", "previous_response_id": first})
    assert r.status_code == 200
    # The earlier turn comes back, its instructions do not (OpenAI does not carry them over).
    assert [(m.role, m.content) for m in engine.requests[-1].messages] == [("user", "hi"), ("assistant", "hello"),
                                                                          ("user", "and?")]  # fmt: skip
    unstored = client.post("/v1/responses", json={"model": "m", "input": "x", "store": False}).json
    assert unstored is not None and unstored["store"] is False
    r = client.post("/v1/responses", json={"model": "m", "input": "y", "previous_response_id": unstored["id"]})
    assert r.status_code == 400 and r.json is not None and r.json["error"]["param"] == "previous_response_id"
    r = client.post("/v1/responses", json={"model": "m", "input": "hi", "stream": True})
    got = events(r.get_data(as_text=True))
    assert [name for name, _ in got][0] == "response.created" and got[-1][0] == "response.completed"
    assert all(event_problems(data) == [] for _, data in got)
    assert "".join(d["delta"] for n, d in got if n == "response.output_text.delta") == "hello"
    r.close()
    streamed = got[-1][1]["response"]["id"]
    assert client.post("/v1/responses", json={"model": "m", "input": "z", "previous_response_id": streamed}).status_code == 200
