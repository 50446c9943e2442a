"""Graceful stop of the built-in server, as a real process on the tiny model.

SIGTERM drains: from then on a new request gets a 503 with Retry-After in OpenAI's error shape
(and /health says "draining"), while the requests in flight, streams included, get up to
``--drain-timeout`` seconds to finish with their whole answer; then the process exits 0. What
outlasts the drain is cut short with a 503 (a stream: an error event, then ``[DONE]``). The
launcher sends SIGKILL ``stop_timeout`` seconds after SIGTERM, so the whole stop fits inside that.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from backends.builtin_server.http.server import DRAIN_TIMEOUT_S, STOP_GRACE_S
from launcher.core.deployment import Deployment
from tests.openai_schema import problems
from tests.servers import ServerProcess, StartServer, wait_for

# Long enough to be in flight when SIGTERM lands (~1 s here, ~2 s on a busy machine), short enough
# to finish well inside the default drain.
TOKENS = 500
# The stop after the drain: the scheduler's last step, the handlers' last writes, the exit itself.
STOP_BOUND_S = 2 * STOP_GRACE_S + 1.0


@dataclass
class InFlightCall:
    """A request running in a thread: what came back, and when it was complete."""

    status: int | None = None
    body: Any = None
    events: list[str] = field(default_factory=list)
    done_at: float | None = None
    thread: threading.Thread | None = None


def plain(server: ServerProcess, tokens: int) -> InFlightCall:
    call = InFlightCall()
    body = {"messages": [{"role": "user", "content": "write a long story"}], "do_sample": True, "temperature": 0.9,
            "min_new_tokens": tokens, "max_new_tokens": tokens}  # fmt: skip

    def run() -> None:
        r = server.post("/llm/", body, timeout=60)
        call.status, call.body, call.done_at = r.status_code, r.json(), time.monotonic()

    call.thread = threading.Thread(target=run, daemon=True)
    call.thread.start()
    return call


def stream(server: ServerProcess, tokens: int) -> InFlightCall:
    call = InFlightCall()
    body = {"model": "drain", "messages": [{"role": "user", "content": "tell me a story"}], "stream": True,
            "max_tokens": tokens, "min_tokens": tokens, "stream_options": {"include_usage": True}}  # fmt: skip

    def run() -> None:
        with requests.post(server.url + "/v1/chat/completions", json=body, stream=True, timeout=60) as r:
            call.status = r.status_code
            call.events = [line[len(b"data: ") :].decode() for line in r.iter_lines() if line.startswith(b"data: ")]
        call.done_at = time.monotonic()

    call.thread = threading.Thread(target=run, daemon=True)
    call.thread.start()
    return call


def sigterm_when_running(server: ServerProcess, calls: int) -> float:
    wait_for(f"{calls} requests decoding", lambda: server.metrics()["modelserve_running_requests"] >= calls)
    server.proc.send_signal(signal.SIGTERM)
    return time.monotonic()


def first_refusal(server: ServerProcess) -> requests.Response:
    """Poll with a cheap request until the server refuses it: the signal is handled by then."""
    body = {"model": "drain", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    deadline = time.monotonic() + 5.0
    while True:
        r = server.post("/v1/chat/completions", body, timeout=10)
        if r.status_code == 503 or time.monotonic() > deadline:
            return r
        time.sleep(0.01)


def test_the_drain_fits_in_the_launchers_stop_timeout() -> None:
    stop_timeout = Deployment.model_fields["stop_timeout"].default
    assert stop_timeout > DRAIN_TIMEOUT_S + STOP_BOUND_S, "a drain the launcher would cut short with SIGKILL"


@pytest.mark.reliability
@pytest.mark.slow
def test_sigterm_lets_in_flight_requests_finish_and_refuses_new_ones(start_server: StartServer,
                                                                      tiny_model_dir: Path) -> None:  # fmt: skip
    server = start_server(tiny_model_dir, name="drain")  # the default --drain-timeout
    calls = {"plain": plain(server, TOKENS), "stream": stream(server, TOKENS)}
    signalled = sigterm_when_running(server, 2)

    refused = first_refusal(server)
    refused_at = time.monotonic()
    assert refused.status_code == 503, refused.text
    assert refused.headers["Retry-After"].isdigit() and problems("error", refused.json()) == [], refused.text
    assert refused.json()["error"]["code"] == "shutting_down"
    health = server.get("/health")
    assert health.status_code == 503 and health.json()["status"] == "draining"
    in_flight_at_refusal = [name for name, call in calls.items() if call.done_at is None]

    code = server.proc.wait(timeout=DRAIN_TIMEOUT_S + STOP_BOUND_S)
    exited = time.monotonic() - signalled
    for call in calls.values():
        assert call.thread is not None
        call.thread.join(timeout=10)
    assert code == 0, server.log_tail()
    assert in_flight_at_refusal == ["plain", "stream"], "they ended before the drain began: make TOKENS larger"
    assert calls["plain"].status == 200 and calls["plain"].body["data"]["completion_tokens"] == TOKENS
    events = calls["stream"].events
    assert calls["stream"].status == 200 and events[-1] == "[DONE]", events[-3:]
    chunks = [json.loads(e) for e in events[:-1]]
    assert not [c for c in chunks if "error" in c] and chunks[-1]["usage"]["completion_tokens"] == TOKENS
    assert all(problems("chat_chunk", c) == [] for c in chunks)
    # (A probe of first_refusal's may have been admitted too, just before the drain began.)
    assert re.search(r"(\d+) of \1 request\(s\) in flight finished during the drain, 0 cut short", server.log_tail())
    finished = max(c.done_at or 0.0 for c in calls.values()) - signalled
    print(f"drain: 2 in-flight requests (plain + stream, {TOKENS} tokens each) finished with 200 {finished:.2f} s "
          f"after SIGTERM; a new request got 503 (Retry-After {refused.headers['Retry-After']} s) "
          f"{(refused_at - signalled) * 1000:.0f} ms after it; exit 0 {exited:.2f} s after it "
          f"(bound {DRAIN_TIMEOUT_S + STOP_BOUND_S:.0f} s)")  # fmt: skip


@pytest.mark.reliability
@pytest.mark.slow
def test_what_outlasts_the_drain_gets_a_503_and_the_stop_stays_bounded(start_server: StartServer,
                                                                       tiny_model_dir: Path) -> None:  # fmt: skip
    drain = 1.0
    server = start_server(tiny_model_dir, "--drain-timeout", str(drain), name="drain")
    # ~1,900 tokens take several seconds here: far more than the one-second drain.
    calls = {"plain": plain(server, 1900), "stream": stream(server, 1900)}
    signalled = sigterm_when_running(server, 2)
    assert first_refusal(server).status_code == 503

    code = server.proc.wait(timeout=drain + STOP_BOUND_S + 5)
    exited = time.monotonic() - signalled
    for call in calls.values():
        assert call.thread is not None
        call.thread.join(timeout=10)
    assert code == 0, server.log_tail()
    assert exited < drain + STOP_BOUND_S, f"exit {exited:.2f} s after SIGTERM"
    assert calls["plain"].status == 503 and "shutting down" in calls["plain"].body["error"]["message"]
    events = calls["stream"].events
    assert calls["stream"].status == 200 and events[-1] == "[DONE]", events[-3:]
    error = json.loads(events[-2])
    assert problems("error", error) == [] and "shutting down" in error["error"]["message"], events[-2]
    assert re.search(r"\d+ of \d+ request\(s\) in flight finished during the drain, 2 cut short", server.log_tail())
    print(f"drain cut short: --drain-timeout {drain:.0f} s, 2 requests of 1900 tokens got 503 (the stream as an "
          f"error event); exit 0 {exited:.2f} s after SIGTERM (bound {drain + STOP_BOUND_S:.0f} s)")  # fmt: skip
