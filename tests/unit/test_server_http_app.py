"""The Flask app in-process, on a fake engine: routes from app state, error handlers, SSE framing.

No model and no server process: these check the HTTP layer alone
(tests/integration/test_server_process.py runs the real thing end to end).
"""

from __future__ import annotations

import json

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydantic import BaseModel

from backends.builtin_server.http.app import InFlight, create_app
from backends.builtin_server.http.state import ServerState, current_state
from tests.fake_engine import USER, FakeEngine


@pytest.fixture()
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture()
def app(engine: FakeEngine) -> Flask:
    return create_app(engine, served_name="m", created=123)  # type: ignore[arg-type]


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def test_state_and_inflight_live_in_app_extensions(app: Flask, engine: FakeEngine) -> None:
    with app.app_context():
        assert current_state() == ServerState(runner=engine, served_name="m", api_key=None, created=123)  # type: ignore[arg-type]
    assert isinstance(app.extensions["modelserve.inflight"], InFlight)


def test_plain_routes_read_app_state(client: FlaskClient) -> None:
    assert client.get("/health").json == {"status": "ok", "model": "m"}
    assert client.get("/v1/models").json == {
        "object": "list",
        "data": [{"id": "m", "object": "model", "created": 123, "owned_by": "modelserve"}],
    }
    assert client.get("/metrics").mimetype == "text/plain"


def test_bad_field_is_a_400_naming_it_before_the_engine_sees_anything(client: FlaskClient, engine: FakeEngine) -> None:
    r = client.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": 5}]})
    assert r.status_code == 400
    assert r.json == {
        "error": {
            "message": "messages[0].content must be a string or an array of text parts, got a number 5",
            "type": "invalid_request_error",
            "param": "messages[0].content",
            "code": None,
        }
    }
    assert engine.requests == []


def test_chat_and_llm_answers(client: FlaskClient, engine: FakeEngine) -> None:
    chat = client.post("/v1/chat/completions", json={"model": "m", "messages": USER, "max_tokens": 4}).json
    assert chat is not None and chat["choices"][0]["message"] == {"role": "assistant", "content": "hello", "refusal": None}
    assert chat["usage"] == {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4,
                             "prompt_tokens_details": {"cached_tokens": 0}}
    llm = client.post("/llm/", json={"messages": USER}).json
    assert llm is not None and llm["data"]["response"]["choices"][0]["message"]["content"] == "hello"
    assert [r.budget.field for r in engine.requests] == ["max_tokens", "max_length"]


def test_stream_frames_chunks_usage_and_done(client: FlaskClient, app: Flask, engine: FakeEngine) -> None:
    body = {"model": "m", "prompt": "x", "stream": True, "stream_options": {"include_usage": True}}
    r = client.post("/v1/completions", json=body)
    assert r.mimetype == "text/event-stream"
    events = [line[len("data: ") :] for line in r.get_data(as_text=True).split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert [c["choices"][0]["text"] for c in chunks[:-1]] == ["hel", "lo", ""]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 5
    assert 'route="/v1/completions",status="200"} 1' in engine.metrics.render()
    r.close()  # what a WSGI server does after the last chunk
    assert app.extensions["modelserve.inflight"].count == 0


def test_validation_and_unexpected_errors_leave_as_json(app: Flask) -> None:
    class Body(BaseModel):
        n: int

    def invalid() -> str:
        Body.model_validate({"n": "x"})
        return "unreachable"

    def broken() -> str:
        raise RuntimeError("boom")

    app.add_url_rule("/invalid", view_func=invalid)
    app.add_url_rule("/broken", view_func=broken)
    client = app.test_client()
    r = client.get("/invalid")
    assert (r.status_code, r.json) == (
        400,
        {"error": {"message": 'n must be an integer, got a string "x"', "type": "invalid_request_error",
                   "param": "n", "code": None}},  # fmt: skip
    )
    r = client.get("/broken")
    assert r.status_code == 500 and r.json == {
        "error": {"message": "internal error: RuntimeError: boom", "type": "server_error", "param": None, "code": None}
    }


def test_api_key_guards_all_but_health(engine: FakeEngine) -> None:
    client = create_app(engine, served_name="m", api_key="k").test_client()  # type: ignore[arg-type]
    assert client.get("/health").status_code == 200
    r = client.get("/v1/models")
    assert r.status_code == 401 and r.json is not None and r.json["error"]["type"] == "authentication_error"
    assert client.get("/v1/models", headers={"Authorization": "Bearer k"}).status_code == 200


def test_unknown_route_and_method(client: FlaskClient) -> None:
    r = client.get("/nope")
    assert r.status_code == 404 and r.json is not None and "POST /v1/chat/completions" in r.json["error"]["message"]
    r = client.get("/llm/")
    assert (r.status_code, r.headers["Allow"]) == (405, "POST")


def test_draining_refuses_new_requests_and_waits_for_the_ones_in_flight(app: Flask, client: FlaskClient) -> None:
    inflight: InFlight = app.extensions["modelserve.inflight"]
    stream = client.post("/v1/completions", json={"model": "m", "prompt": "x", "stream": True}, buffered=False)
    assert inflight.drain() == 1  # the stream's body is still open
    for method, path in [("post", "/v1/chat/completions"), ("post", "/llm/"), ("get", "/v1/models"), ("get", "/nope")]:
        r = getattr(client, method)(path, json={"model": "m", "messages": USER})
        assert (r.status_code, r.headers["Retry-After"]) == (503, "5"), (path, r.json)
        assert r.json is not None and r.json["error"]["code"] == "shutting_down" and r.json["error"]["type"] == "server_error"
    health = client.get("/health")
    assert (health.status_code, health.json) == (503, {"status": "draining", "model": "m"})
    assert client.get("/metrics").status_code == 200 and inflight.count == 1  # refusals were never counted
    assert stream.get_data(as_text=True).endswith("data: [DONE]\n\n")  # admitted before: it finishes
    stream.close()
    assert inflight.count == 0
