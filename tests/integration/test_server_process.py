"""The built-in server as a real process on the tiny random-weight model: routes, errors, auth,
streaming, batching, disconnects and shutdown. No big model needed."""

from __future__ import annotations

import json
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.servers import ServerProcess, StartServer, wait_for

LLM_DATA_KEYS = {"completion_tokens", "messages", "prompt_tokens", "response", "total_tokens", "username"}
LLM_RESPONSE_KEYS = {"choices", "created", "id", "model", "object", "usage"}
USAGE_KEYS = {"prompt_tokens", "completion_tokens", "total_tokens"}


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def prompt_tokens(tok: Any, messages: list[dict[str, str]]) -> int:
    """What the server must report: the chat-templated prompt, tokenised without extra specials."""
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return len(tok(text, add_special_tokens=False)["input_ids"])


def assert_still_serving(server: ServerProcess) -> None:
    assert server.proc.poll() is None, server.log_tail()
    r = server.post("/llm/", {"messages": user("hello"), "max_new_tokens": 2})
    assert r.status_code == 200, r.text


def sse_events(response: requests.Response) -> list[str]:
    lines = (raw.decode() for raw in response.iter_lines())
    return [line[len("data: ") :] for line in lines if line.startswith("data: ")]


# ----------------------------------------------------------------------------- plain routes


def test_health_and_models(tiny_server: ServerProcess) -> None:
    assert tiny_server.get("/health").json() == {"status": "ok", "model": "tiny"}
    models = tiny_server.get("/v1/models").json()
    assert models["object"] == "list"
    [card] = models["data"]
    assert {k: card[k] for k in ("id", "object", "owned_by")} == {
        "id": "tiny",
        "object": "model",
        "owned_by": "modelserve",
    }
    assert isinstance(card["created"], int) and card["created"] > 1_600_000_000


def test_unknown_route_and_wrong_method_are_json(tiny_server: ServerProcess) -> None:
    r = tiny_server.get("/nope")
    assert (r.status_code, r.json()["error"]["type"]) == (404, "invalid_request_error")
    assert "/v1/chat/completions" in r.json()["error"]["message"]
    r = tiny_server.get("/llm/")
    assert (r.status_code, r.json()["error"]["type"]) == (405, "invalid_request_error")
    assert "use POST" in r.json()["error"]["message"]
    r = tiny_server.post("/health")
    assert r.status_code == 405 and r.headers["Content-Type"].startswith("application/json")


# ----------------------------------------------------------------------------- /llm/


def test_llm_envelope_is_exact(tiny_server: ServerProcess, tiny_tokenizer: Any) -> None:
    messages = [{"role": "system", "content": "you are a helpful assistant"}, *user("what is the capital of france ?")]
    r = tiny_server.post("/llm/", {"messages": messages, "max_new_tokens": 5, "temperature": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"data"}
    data = body["data"]
    assert set(data) == LLM_DATA_KEYS
    assert (data["messages"], data["username"]) == ({}, "")
    response = data["response"]
    assert set(response) == LLM_RESPONSE_KEYS
    assert (response["model"], response["object"]) == ("tiny", "text_completion")
    [choice] = response["choices"]
    assert set(choice) == {"message"} and set(choice["message"]) == {"role", "content"}
    assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
    expected_prompt = prompt_tokens(tiny_tokenizer, messages)
    assert data["prompt_tokens"] == expected_prompt
    # completion_tokens counts the new tokens only (AgentScope's script counted the prompt too).
    assert 0 <= data["completion_tokens"] <= 5
    assert data["total_tokens"] == expected_prompt + data["completion_tokens"]
    assert response["usage"] == {
        "prompt_tokens": expected_prompt,
        "completion_tokens": data["completion_tokens"],
        "total_tokens": data["total_tokens"],
    }
    assert isinstance(response["created"], int) and isinstance(response["id"], str)


def test_llm_accepts_inputs_with_names(tiny_server: ServerProcess) -> None:
    # AgentScope <= 0.0.5 sends "inputs", with a name on every message, and max_length (HF meaning).
    inputs = [
        {"role": "system", "name": "system", "content": "hi"},
        {"role": "user", "name": "user", "content": "hello"},
    ]
    r = tiny_server.post("/llm/", {"inputs": inputs, "max_length": 60, "temperature": 0.5})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["prompt_tokens"] + data["completion_tokens"] <= 60


def test_llm_unknown_generate_key_is_400_and_server_keeps_serving(tiny_server: ServerProcess) -> None:
    r = tiny_server.post("/llm/", {"messages": user("hello"), "model": "tiny", "max_new_tokens": 2})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "model"
    assert "'model'" in error["message"] and "max_new_tokens" in error["message"]
    assert_still_serving(tiny_server)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"", "empty"),
        (b'{"max_new_tokens": 4}', "messages is required"),
        (b'{"messages": []}', "non-empty array"),
        (b'{"messages": [{"role": "user"}]}', "messages[0].content"),
        (
            b'{"messages": [{"role": "user", "content": "hi"}], "max_new_tokens": 1000000000}',
            "max_new_tokens must be <=",
        ),
        (b'{"messages": [{"role": "user", "content": "hi"}], "max_new_tokens": -1}', "max_new_tokens must be >= 1"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "max_new_tokens": "8"}', "must be an integer"),
        # Fits the --max-new-tokens-limit (4096) but not the tiny model's 2048-token context.
        (b'{"messages": [{"role": "user", "content": "hi"}], "max_new_tokens": 2047}', "does not fit"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "max_length": 3}', "raise max_length above"),
    ],
    ids=[
        "malformed",
        "array",
        "empty",
        "no-messages",
        "empty-messages",
        "no-content",
        "huge",
        "negative",
        "string",
        "over-context",
        "max-length-too-small",
    ],  # fmt: skip
)
def test_llm_bad_request_is_4xx_json_and_server_keeps_serving(
    tiny_server: ServerProcess, raw: bytes, needle: str
) -> None:
    r = tiny_server.post("/llm/", data=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert needle in r.json()["error"]["message"]
    assert_still_serving(tiny_server)


# ----------------------------------------------------------------------------- OpenAI


def test_chat_completion_shape(tiny_server: ServerProcess, tiny_tokenizer: Any) -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "tell me about cats"}], "name": "bob"}]
    r = tiny_server.post(
        "/v1/chat/completions", {"model": "tiny", "messages": messages, "max_completion_tokens": 4, "seed": 3}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"].startswith("chatcmpl-")
    assert (body["object"], body["model"]) == ("chat.completion", "tiny")
    assert isinstance(body["created"], int)
    [choice] = body["choices"]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["prompt_tokens"] == prompt_tokens(tiny_tokenizer, user("tell me about cats"))
    assert usage["completion_tokens"] <= 4
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_chat_length_finish_reason(tiny_server: ServerProcess) -> None:
    body = {"model": "tiny", "messages": user("hello"), "max_tokens": 3, "min_tokens": 3, "temperature": 0}
    r = tiny_server.post("/v1/chat/completions", body)
    assert r.status_code == 200, r.text
    assert (r.json()["choices"][0]["finish_reason"], r.json()["usage"]["completion_tokens"]) == ("length", 3)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"model": "gpt-4"}, 404, "The model `gpt-4` does not exist."),
        ({"n": 0}, 400, "n must be >= 1"),
        ({"temperature": "warm"}, 400, "temperature must be a number"),
        ({"frobnicate": True}, 400, "unsupported field 'frobnicate'"),
    ],
)
def test_chat_errors(tiny_server: ServerProcess, body: dict[str, Any], status: int, needle: str) -> None:
    r = tiny_server.post("/v1/chat/completions", {"model": "tiny", "messages": user("hi"), **body})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert needle in error["message"] and set(error) == {"message", "type", "param", "code"}
    if status == 404:
        assert r.json() == {"error": {"message": needle, "type": "NotFoundError", "param": "model",
                                      "code": "model_not_found"}}  # fmt: skip
    assert_still_serving(tiny_server)


def test_stop_string_truncates(tiny_server: ServerProcess) -> None:
    base = {
        "model": "tiny",
        "messages": user("write a long story"),
        "max_tokens": 16,
        "min_tokens": 16,
        "temperature": 0,
        # Greedy on random weights tends to repeat one token; the penalty keeps the text varied.
        "repetition_penalty": 3.0,
    }
    full = tiny_server.post("/v1/chat/completions", base).json()
    text = full["choices"][0]["message"]["content"]
    stop = text[len(text) // 2 : len(text) // 2 + 4]
    assert stop, f"need a stop string from {text!r}"
    cut = tiny_server.post("/v1/chat/completions", {**base, "stop": [stop]}).json()
    # Greedy and alone both times: the same tokens, cut where the stop string starts.
    assert cut["choices"][0]["message"]["content"] == text[: text.find(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"
    assert cut["usage"]["completion_tokens"] < full["usage"]["completion_tokens"]


def test_chat_stream(tiny_server: ServerProcess) -> None:
    body = {"model": "tiny", "messages": user("hello"), "max_tokens": 6, "min_tokens": 6, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}  # fmt: skip
    with tiny_server.post("/v1/chat/completions", body, stream=True) as r:
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        events = sse_events(r)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "tiny" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = [c for c in chunks[1:] if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(content) >= 2, events
    *_, last, usage_chunk = chunks
    assert last["choices"][0]["finish_reason"] == "length"
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 6
    # The streamed text is what the same greedy request returns in one piece.
    whole = tiny_server.post("/v1/chat/completions", {**body, "stream": False, "stream_options": None}).json()
    assert "".join(c["choices"][0]["delta"]["content"] for c in content) == whole["choices"][0]["message"]["content"]


def test_chat_stream_without_usage(tiny_server: ServerProcess) -> None:
    body = {"model": "tiny", "messages": user("hello"), "max_tokens": 3, "stream": True}
    with tiny_server.post("/v1/chat/completions", body, stream=True) as r:
        chunks = [json.loads(e) for e in sse_events(r)[:-1]]
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_completions(tiny_server: ServerProcess, tiny_tokenizer: Any) -> None:
    prompt = "one two three"
    r = tiny_server.post("/v1/completions", {"model": "tiny", "prompt": prompt, "max_tokens": 4, "temperature": 0})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    assert isinstance(body["choices"][0]["text"], str)
    assert body["usage"]["prompt_tokens"] == len(tiny_tokenizer(prompt)["input_ids"])
    stream_body = {"model": "tiny", "prompt": prompt, "max_tokens": 4, "min_tokens": 4, "stream": True}
    with tiny_server.post("/v1/completions", stream_body, stream=True) as s:
        events = sse_events(s)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "text_completion" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


# ----------------------------------------------------------------------------- metrics


def test_metrics_count_requests(tiny_server: ServerProcess) -> None:
    key = 'modelserve_requests_total{route="/v1/models",status="200"}'
    before = tiny_server.metrics().get(key, 0)
    for _ in range(3):
        tiny_server.get("/v1/models")
    after = tiny_server.metrics()
    assert after[key] == before + 3
    for name in ("modelserve_prompt_tokens_total", "modelserve_completion_tokens_total", "modelserve_step_rows_count",
                 "modelserve_time_to_first_token_seconds_count", "modelserve_inter_token_latency_seconds_sum",
                 "modelserve_queue_depth", "modelserve_running_requests", "modelserve_kv_cache_tokens",
                 "modelserve_kv_cache_budget_tokens", "modelserve_rejected_requests_total"):  # fmt: skip
        assert name in after
    assert tiny_server.get("/metrics").headers["Content-Type"].startswith("text/plain")


# ----------------------------------------------------------------------------- concurrency


def long_request(tokens: int) -> dict[str, Any]:
    """A sampling request that keeps the scheduler busy for ``tokens`` steps."""
    return {"messages": user("write a long story"), "do_sample": True, "temperature": 0.9,
            "min_new_tokens": tokens, "max_new_tokens": tokens}  # fmt: skip


def test_requests_join_a_running_batch_and_each_gets_its_own_counts(
    tiny_server: ServerProcess, tiny_tokenizer: Any
) -> None:
    prompts = [" ".join(["hello"] * (i + 1)) + " what is the capital of france ?" for i in range(7)]
    before = tiny_server.metrics()
    with ThreadPoolExecutor(max_workers=8) as pool:
        blocker = pool.submit(tiny_server.post, "/llm/", long_request(1500))
        wait_for("the blocker to run", lambda: tiny_server.metrics()["modelserve_running_requests"] >= 1)
        futures: list[Future[requests.Response]] = [
            pool.submit(tiny_server.post, "/llm/", {"messages": user(p), "max_new_tokens": 4, "temperature": 0})
            for p in prompts
        ]
        responses = [f.result(timeout=120) for f in futures]
        # Continuous batching: they joined the running batch, they did not wait for the blocker.
        assert not blocker.done(), "the short requests waited for the long one"
        assert blocker.result(timeout=120).status_code == 200
    for prompt, r in zip(prompts, responses, strict=True):
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert data["prompt_tokens"] == prompt_tokens(tiny_tokenizer, user(prompt)), prompt
        assert data["completion_tokens"] <= 4
    after = tiny_server.metrics()
    alone = 'modelserve_step_rows_bucket{le="1.0"}'
    steps = after["modelserve_step_rows_count"] - before["modelserve_step_rows_count"]
    assert steps >= 1499 and after[alone] - before[alone] < steps, "no step decoded rows together"


def test_client_disconnect_mid_stream_stops_generation(tiny_server: ServerProcess) -> None:
    body = {"model": "tiny", "messages": user("write a long story"), "max_tokens": 1500, "min_tokens": 1500,
            "stream": True}  # fmt: skip
    key = 'modelserve_requests_total{route="/v1/chat/completions",status="499"}'
    before = tiny_server.metrics().get(key, 0)
    r = tiny_server.post("/v1/chat/completions", body, stream=True)
    lines = (raw.decode() for raw in r.iter_lines())
    got = [line for line in (next(lines) for _ in range(6)) if line.startswith("data: ")]
    assert len(got) >= 2
    r.close()  # hang up mid-stream
    wait_for("the server to notice the hang-up", lambda: tiny_server.metrics().get(key, 0) == before + 1)
    wait_for("generation to stop", lambda: tiny_server.metrics()["modelserve_running_requests"] == 0)
    assert "client went away" in tiny_server.log_tail()
    assert_still_serving(tiny_server)


# ----------------------------------------------------------------------------- auth, shutdown


@pytest.fixture(scope="module")
def keyed_server(start_server: StartServer, tiny_model_dir: Path) -> ServerProcess:
    return start_server(tiny_model_dir, api_key="s3cret-key")


def test_api_key(keyed_server: ServerProcess) -> None:
    none: dict[str, str] = {}
    assert keyed_server.get("/health", headers=none).status_code == 200  # readiness probes need no key
    for headers in (none, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-key"}):
        r = keyed_server.get("/v1/models", headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error"]["type"] == "authentication_error"
        r = keyed_server.post("/llm/", {"messages": user("hi")}, headers=headers)
        assert r.status_code == 401
    assert keyed_server.get("/v1/models").status_code == 200
    assert keyed_server.get("/metrics").status_code == 200
    r = keyed_server.post("/llm/", {"messages": user("hi"), "max_new_tokens": 2})
    assert r.status_code == 200, r.text


def test_api_key_not_in_argv(keyed_server: ServerProcess) -> None:
    cmdline = Path(f"/proc/{keyed_server.proc.pid}/cmdline").read_bytes()
    assert b"s3cret-key" not in cmdline


def test_sigterm_exits_zero_and_answers_in_flight_request(start_server: StartServer, tiny_model_dir: Path) -> None:
    # No drain: what runs is cut short at once (tests/reliability/test_drain.py covers the drain).
    server = start_server(tiny_model_dir, "--drain-timeout", "0")
    result: dict[str, requests.Response | BaseException] = {}

    def call() -> None:
        try:
            result["r"] = server.post("/llm/", long_request(1900), timeout=60)
        except BaseException as exc:  # recorded and asserted on below
            result["r"] = exc

    caller = threading.Thread(target=call)
    caller.start()
    wait_for("the request to run", lambda: server.metrics()["modelserve_running_requests"] >= 1)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=15) == 0, server.log_tail()
    assert time.monotonic() - started < 10
    caller.join(timeout=30)
    response = result["r"]
    assert isinstance(response, requests.Response), response
    assert response.status_code == 503 and "shutting down" in response.json()["error"]["message"]
    assert "stopped" in server.log_tail()


def test_port_in_use_exits_1_with_message(
    start_server: StartServer, tiny_model_dir: Path, tiny_server: ServerProcess
) -> None:
    port = tiny_server.url.rsplit(":", 1)[1]
    # argparse keeps the last --port: the tiny server's own port, already held.
    server = start_server(tiny_model_dir, "--port", port, wait=False)
    assert server.proc.wait(timeout=120) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in server.log_tail()
    assert_still_serving(tiny_server)


@pytest.mark.parametrize(
    ("path", "raw", "param"),
    [
        ("/v1/completions", rb'{"model": "\ud800", "prompt": "hi", "max_tokens": 2}', "model"),
        ("/v1/chat/completions", rb'{"model": "\ud800", "messages": [{"role": "user", "content": "hi"}]}', "model"),
        ("/v1/chat/completions", rb'{"model": "tiny", "messages": [{"role": "user", "content": "a\udc00"}]}',
         "messages[0].content"),
        ("/llm/", rb'{"messages": [{"role": "user", "content": "\ud800 hi"}], "max_new_tokens": 2}', "messages[0].content"),
        ("/llm/", rb'{"messages": [{"role": "user", "content": "hi", "\ud800": 1}]}', None),
    ],
)
def test_a_lone_surrogate_is_a_400_not_a_500(tiny_server: ServerProcess, path: str, raw: bytes, param: str | None) -> None:
    """Found by fuzzing round one: "\\ud800" is valid JSON but no character; it reached the
    tokenizer and came back as a 500."""
    r = tiny_server.post(path, data=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_unicode" and r.json()["error"]["param"] == param
    assert_still_serving(tiny_server)
