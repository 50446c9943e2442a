"""Fuzz: thousands of random and mutated requests against one real built-in server on the tiny model.

Every route is hit (the three generation routes streamed and not, /v1/models, /health, /metrics,
paths that do not exist) with valid bodies, mutated ones, random JSON, bytes that are not JSON,
wrong methods and odd content types (fuzz_cases.py). The answers must hold up:

- no status >= 500 other than 503 (and a 503 says when to retry);
- every 4xx is JSON in its surface's error shape (OpenAI's published ErrorResponse schema;
  under /v1/messages Anthropic's, parsed strictly with the SDK's types);
- every 200 from an OpenAI route validates against OpenAI's schema, streams chunk by chunk, with
  no error event and a final ``[DONE]``; a Messages answer or event parses strictly as the SDK's
  types, a Responses one validates against OpenAI's schema, and each stream runs start to end;
- the server is still up and answers a normal request at the end.

CI sends ``MODELSERVE_FUZZ_REQUESTS`` = 2,000 requests (the default); ``make soak`` sends 10,000.
Hypothesis is derandomized (the same requests on every run) and shrinks a failure to a small case.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings
from jsonschema import Draft202012Validator

from tests import anthropic_types
from tests.openai_schema import event_problems, validator
from tests.reliability.fuzz_cases import GENERATION_ROUTES, MODEL, POOLING_ROUTES, Case, cases, pooling_cases
from tests.servers import ServerProcess, StartServer

FUZZ_REQUESTS = int(os.environ.get("MODELSERVE_FUZZ_REQUESTS", "2000"))
# Per embed / rerank server: a quarter as many (500 in CI, 2,500 under `make soak`).
POOLING_REQUESTS = FUZZ_REQUESTS // 4
RESPONSE_KIND = {"/v1/chat/completions": "chat", "/v1/completions": "completion", "/v1/models": "models",
                 "/v1/responses": "response"}  # fmt: skip
CHUNK_KIND = {"/v1/chat/completions": "chat_chunk", "/v1/completions": "completion"}


@pytest.fixture(scope="module")
def fuzz_server(start_server: StartServer, tiny_model_dir: Path) -> ServerProcess:
    # --max-new-tokens-limit 16 keeps any fuzzed token count cheap to generate (more is a 400).
    return start_server(tiny_model_dir, "--max-batch-size", "4", "--max-new-tokens-limit", "16", name=MODEL)


@cache
def _validator(kind: str) -> Draft202012Validator:
    return validator(kind)  # building one reads and rewrites the vendored schema file: once per kind


def schema_problems(kind: str, body: Any) -> list[str]:
    return [f"{kind} {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:200]}"
            for e in _validator(kind).iter_errors(body)]  # fmt: skip


def send(session: requests.Session, server: ServerProcess, case: Case) -> requests.Response:
    data: bytes | Iterator[bytes] | None = case.body
    if case.chunked and case.body is not None:
        body = case.body
        data = (body[i : i + 65536] for i in range(0, len(body), 65536))
    return session.request(case.method, server.url + case.path, data=data, headers=case.headers, timeout=60)


def answer_problems(case: Case, r: requests.Response) -> list[str]:
    """Everything wrong with one answer (empty: the answer is fine)."""
    status = r.status_code
    if status >= 500 and status != 503:
        return [f"status {status}: {r.text[:1000]}"]
    if status == 503 and not r.headers.get("Retry-After", "").isdigit():
        return [f"a 503 without a Retry-After in seconds: {r.headers}"]
    if case.method == "HEAD" or (case.method == "OPTIONS" and status == 200):
        return []  # no body to check (Flask answers OPTIONS itself, with an Allow header)
    anthropic = case.path.startswith("/v1/messages")  # the one surface whose errors are not OpenAI-shaped
    if status >= 400:
        try:
            body = r.json()
        except ValueError:
            return [f"a {status} whose body is not JSON: {r.text[:300]!r}"]
        return anthropic_types.problems("error", body) if anthropic else schema_problems("error", body)
    if status != 200 or case.method not in ("GET", "POST"):
        return [] if status < 400 else [f"unexpected {status}"]
    path = case.path
    if r.headers.get("Content-Type", "").startswith("text/event-stream"):
        if path in ("/v1/messages", "/v1/responses"):
            return named_stream_problems(path, r.text)
        return stream_problems(CHUNK_KIND.get(path, "?"), r.text)
    if path == "/v1/messages":
        return anthropic_types.problems("message", r.json())
    if path == "/v1/messages/count_tokens":
        return anthropic_types.problems("count", r.json())
    if path in RESPONSE_KIND:
        return schema_problems(RESPONSE_KIND[path], r.json())
    if path == "/v1/embeddings":
        return embedding_problems(r.json())
    if path in ("/v1/rerank", "/rerank"):
        return rerank_problems(r.json())
    if path == "/llm/":
        reply = r.json()["data"]["response"]["choices"][0]["message"]["content"]
        return [] if isinstance(reply, str) else [f"/llm/ reply is not text: {reply!r}"]
    if path == "/health":
        return [] if r.json().get("status") == "ok" else [f"/health: {r.text[:200]}"]
    return []


def embedding_problems(body: Any) -> list[str]:
    """OpenAI's embeddings shape: data[i] = {object, index i, embedding: numbers or base64 text}, usage."""
    data = body.get("data") if isinstance(body, dict) else None
    if body.get("object") != "list" or not isinstance(data, list) or not data:
        return [f"not an embeddings list: {json.dumps(body)[:300]}"]
    found = [f"data[{i}] is {d!r:.200}" for i, d in enumerate(data)
             if d.get("object") != "embedding" or d.get("index") != i
             or not (isinstance(d.get("embedding"), str) or all(isinstance(x, float) for x in d["embedding"]))]  # fmt: skip
    usage = body.get("usage") or {}
    if not isinstance(usage.get("prompt_tokens"), int) or usage.get("total_tokens") != usage.get("prompt_tokens"):
        found.append(f"usage: {usage}")
    return found


def rerank_problems(body: Any) -> list[str]:
    results = body.get("results") if isinstance(body, dict) else None
    if not isinstance(results, list) or not results:
        return [f"no results: {json.dumps(body)[:300]}"]
    scores = [x.get("relevance_score") for x in results]
    if not all(isinstance(s, float) for s in scores) or scores != sorted(scores, reverse=True):
        return [f"results not sorted by relevance_score: {scores}"]
    indices = [x.get("index") for x in results]
    return [] if len(set(indices)) == len(indices) else [f"an index twice: {indices}"]


def stream_problems(kind: str, text: str) -> list[str]:
    events = [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]
    if not events or events[-1] != "[DONE]":
        return [f"the stream does not end with [DONE]: {text[-300:]!r}"]
    found = []
    for event in events[:-1]:
        chunk = json.loads(event)
        if "error" in chunk:
            found.append(f"an error event in a 200 stream: {event[:300]}")
        elif kind != "completion" or chunk["choices"] and chunk["choices"][0]["finish_reason"] is not None:
            found += schema_problems(kind, chunk)
        else:
            # OpenAI's schema for a streamed completion requires a finish_reason, but its API (and
            # vLLM, and we) send null until a choice ends: the one departure allowed (as in
            # tests/e2e/test_server_openai_schemas.py). The chunk is checked with the end it will have.
            found += schema_problems(kind, {**chunk, "choices": [{**c, "finish_reason": "length"} for c in chunk["choices"]]})
    return found


def named_stream_problems(path: str, text: str) -> list[str]:
    """An Anthropic or Responses stream (``event:`` + ``data:``): every event valid, in its place."""
    events = [json.loads(line[len("data: ") :]) for line in text.splitlines() if line.startswith("data: ")]
    names = [line[len("event: ") :] for line in text.splitlines() if line.startswith("event: ")]
    found = [f"event line {n!r} != data type {e.get('type')!r}" for n, e in zip(names, events, strict=False)
             if n != e.get("type")]  # fmt: skip
    if path == "/v1/messages":
        found += [p for e in events for p in anthropic_types.problems("event", e)]
        ends = ("message_start", "message_stop")
    else:
        found += [p for e in events for p in event_problems(e)]
        ends = ("response.created", "response.completed")
    if not events or events[0].get("type") != ends[0] or events[-1].get("type") not in (ends[1], "response.incomplete"):
        found.append(f"the stream does not run {ends[0]} .. {ends[1]}: {[e.get('type') for e in events]}")
    return found


class Tally:
    """What the fuzz sent and got, for the summary line."""

    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.kinds: Counter[str] = Counter()
        self.generated: Counter[str] = Counter()  # 200s by generation route: requests that went through the model
        self.no_answer = 0

    @property
    def requests(self) -> int:
        return self.statuses.total() + self.no_answer

    def add(self, case: Case, r: requests.Response | None) -> None:
        self.kinds[case.kind] += 1
        if r is None:
            self.no_answer += 1
            return
        self.statuses[r.status_code] += 1
        if r.status_code == 200 and case.method == "POST" and case.path in GENERATION_ROUTES + POOLING_ROUTES:
            self.generated[case.path] += 1

    def summary(self, seconds: float) -> str:
        bad = sum(n for status, n in self.statuses.items() if status >= 500 and status != 503)
        return (f"fuzz: {self.requests} requests in {seconds:.0f} s; statuses {dict(sorted(self.statuses.items()))}; "
                f"5xx other than 503: {bad}; no answer: {self.no_answer}; through the model: {self.generated.total()} "
                f"{dict(sorted(self.generated.items()))}; "
                f"cases {dict(sorted(self.kinds.items()))}")  # fmt: skip


@pytest.mark.reliability
@pytest.mark.slow
def test_fuzzed_requests_never_get_a_5xx_and_errors_keep_openais_shape(fuzz_server: ServerProcess) -> None:
    tally = Tally()
    session = requests.Session()

    @settings(max_examples=FUZZ_REQUESTS, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink])  # fmt: skip
    @given(case=cases)
    def probe(case: Case) -> None:
        try:
            r = send(session, fuzz_server, case)
        except requests.RequestException as exc:
            tally.add(case, None)
            alive = "the server is up" if fuzz_server.proc.poll() is None else "the server exited"
            raise AssertionError(f"no answer ({alive}): {type(exc).__name__}: {exc}") from None
        tally.add(case, r)
        found = answer_problems(case, r)
        assert not found, "\n".join(found)

    started = time.monotonic()
    try:
        probe()
    finally:
        print(tally.summary(time.monotonic() - started))
    assert tally.requests >= FUZZ_REQUESTS, f"hypothesis stopped after {tally.requests} requests"
    assert fuzz_server.proc.poll() is None, fuzz_server.log_tail()
    r = fuzz_server.post("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "hello"}],
                                                  "max_tokens": 4, "temperature": 0})  # fmt: skip
    assert r.status_code == 200 and schema_problems("chat", r.json()) == [], r.text
    assert "Traceback" not in fuzz_server.log_path.read_text(errors="replace"), fuzz_server.log_tail()


@pytest.fixture(scope="module")
def pooling_servers(start_server: StartServer, minilm_dir: Path, tiny_reranker_dir: Path) -> dict[str, ServerProcess]:
    return {"embed": start_server(minilm_dir, "--task", "embed", "--threads", "1", name=MODEL),
            "rerank": start_server(tiny_reranker_dir, "--task", "rerank", name=MODEL)}  # fmt: skip


@pytest.mark.reliability
@pytest.mark.slow
@pytest.mark.parametrize("task", ["embed", "rerank"])
def test_fuzzed_embedding_and_rerank_requests_never_get_a_5xx(pooling_servers: dict[str, ServerProcess],
                                                              task: str) -> None:  # fmt: skip
    """The same fuzz against an embed and a rerank server: their own routes with valid and
    mutated bodies, every other route with the rest (a generation route is a 400 naming the task)."""
    server, tally, session = pooling_servers[task], Tally(), requests.Session()

    @settings(max_examples=POOLING_REQUESTS, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink])  # fmt: skip
    @given(case=pooling_cases)
    def probe(case: Case) -> None:
        try:
            r = send(session, server, case)
        except requests.RequestException as exc:
            tally.add(case, None)
            raise AssertionError(f"no answer: {type(exc).__name__}: {exc}") from None
        tally.add(case, r)
        found = answer_problems(case, r)
        assert not found, "\n".join(found)

    started = time.monotonic()
    try:
        probe()
    finally:
        print(f"{task}: " + tally.summary(time.monotonic() - started))
    assert tally.requests >= POOLING_REQUESTS and tally.generated.total() > 0
    assert server.proc.poll() is None, server.log_tail()
    assert "Traceback" not in server.log_path.read_text(errors="replace"), server.log_tail()
