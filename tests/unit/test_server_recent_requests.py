"""The built-in server's recent-requests ring (what the dashboard's request table reads): one
summary per answered POST, streamed or not, with its tokens and, for a stream, the time to its
first token; never a body; behind the API key like every route but /health."""

from __future__ import annotations

import json
import queue
from concurrent.futures import Future

import pytest
from flask.testing import FlaskClient

from backends.builtin_server.engine.jobs import (
    Choice,
    Completion,
    Job,
    StreamChoiceFinished,
    StreamDelta,
    StreamEvent,
    StreamFinished,
    StreamHandle,
    StreamStarted,
)
from backends.builtin_server.engine.request import GenerationRequest
from backends.builtin_server.http.app import create_app
from backends.builtin_server.http.recent_requests import RecentRequests, tokens_per_second
from tests.fake_engine import USER, FakeEngine


class CachingEngine(FakeEngine):
    """Answers as FakeEngine does, with 2 of the 3 prompt tokens from a prefix cache."""

    def submit(self, request: GenerationRequest) -> Future[Completion]:
        future: Future[Completion] = Future()
        future.set_result(Completion(3, (Choice("hello", 1, "stop"),), cached_tokens=2))
        return future

    def submit_stream(self, request: GenerationRequest) -> StreamHandle:
        events: queue.Queue[StreamEvent] = queue.Queue()
        for event in (StreamStarted(3), StreamDelta("hel"), StreamDelta("lo"), StreamChoiceFinished(0, "stop"),
                      StreamFinished("stop", 3, 2, cached_tokens=2)):  # fmt: skip
            events.put(event)
        return StreamHandle(Job(request=request, events=events), events)


@pytest.fixture()
def engine() -> FakeEngine:
    return CachingEngine()


@pytest.fixture()
def client(engine: FakeEngine) -> FlaskClient:
    return create_app(engine, served_name="m", created=123).test_client()  # type: ignore[arg-type]


def test_plain_and_streamed_requests_are_summarised_without_their_bodies(client: FlaskClient) -> None:
    secret = "the-secret-prompt-text"
    client.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": secret}]})
    stream = client.post("/v1/chat/completions", json={"model": "m", "messages": USER, "stream": True})
    assert stream.get_data(as_text=True).endswith("data: [DONE]\n\n")
    stream.close()
    client.post("/v1/chat/completions", json={"model": "m", "messages": "not a list"})  # a 400 is listed too
    client.get("/v1/models")  # GETs are not

    page = client.get("/modelserve/requests").json
    assert page is not None and page["capacity"] == 256 and len(page["epoch"]) == 12
    rows = page["requests"]
    assert [(r["id"], r["route"], r["status"], r["stream"], r["model"]) for r in rows] == [
        (1, "/v1/chat/completions", 200, False, "m"), (2, "/v1/chat/completions", 200, True, "m"),
        (3, "/v1/chat/completions", 400, False, "m")]  # fmt: skip
    plain, streamed, refused = rows
    assert (plain["prompt_tokens"], plain["completion_tokens"], plain["ttft_s"]) == (3, 1, None)
    assert (streamed["prompt_tokens"], streamed["completion_tokens"]) == (3, 2)
    assert 0 <= streamed["ttft_s"] <= streamed["duration_s"]
    assert (refused["prompt_tokens"], refused["completion_tokens"]) == (None, None)
    assert [(r["client"], r["cached_tokens"]) for r in rows] == [("127.0.0.1", 2), ("127.0.0.1", 2), ("127.0.0.1", None)]
    assert secret not in json.dumps(page)

    newer = client.get("/modelserve/requests?after=2").json
    assert newer is not None and [r["id"] for r in newer["requests"]] == [3]
    bad = client.get("/modelserve/requests?after=-1")
    assert bad.status_code == 400 and bad.json is not None and bad.json["error"]["param"] == "after"


def test_the_ring_needs_the_key(engine: FakeEngine) -> None:
    keyed = create_app(engine, served_name="m", api_key="k").test_client()  # type: ignore[arg-type]
    assert keyed.get("/modelserve/requests").status_code == 401
    assert keyed.get("/modelserve/requests", headers={"Authorization": "Bearer k"}).status_code == 200


def test_the_ring_is_bounded_and_ids_keep_growing() -> None:
    ring = RecentRequests(capacity=3, clock=lambda: 1000.0)
    for i in range(5):
        ring.add(method="POST", route="/llm/", model="m", status=200, stream=False, duration_s=0.5,
                 completion_tokens=i)  # fmt: skip
    assert [s.id for s in ring.since(0)] == [3, 4, 5]
    assert [s.id for s in ring.since(4)] == [5]
    assert ring.since(0)[0].as_json()["time"] == 1000.0


def test_tokens_per_second_counts_the_time_after_the_first_token() -> None:
    assert tokens_per_second(11, 2.0, 1.0) == 11.0  # a stream: 11 tokens over the second after the first
    assert tokens_per_second(10, 2.0, None) == 5.0  # unknown first token: the whole request
    assert tokens_per_second(0, 2.0, 1.0) is None and tokens_per_second(None, 2.0, None) is None
    assert tokens_per_second(1, 2.0, 1.0) == 0.5  # one token: no time after the first to count


def test_polled_routes_stay_out_of_the_log_at_info(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    """The dashboard asks /metrics and /modelserve/requests every second: the log keeps the requests."""
    caplog.set_level("INFO", logger="modelserve.server")
    client.get("/metrics")
    client.get("/modelserve/requests")
    client.get("/health")
    client.post("/v1/chat/completions", json={"model": "m", "messages": USER})
    assert [r.getMessage().split(" -> ")[0] for r in caplog.records if r.levelname == "INFO"] == [
        "POST /v1/chat/completions"]  # fmt: skip
