"""The translating front as a real program (``python -m launcher.front``) in front of real HTTP
upstreams: the OpenAI stand-in (tests/programs/openai_standin.py) and the echo plugin's engine
(tests/plugin), whose model check gives real engine errors. What passes through is untouched,
streams chunk by chunk; what it translates answers in the surface's shape, keys and refusals
included. The surfaces on real engines: tests/e2e/test_surfaces.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from launcher.process import ports
from tests import anthropic_types
from tests.openai_schema import event_problems, problems

ROOT = Path(__file__).resolve().parents[2]
ASK = {"model": "standin", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    url: str


def start(argv: list[str], port: int, *, env: dict[str, str] | None = None, log: Path) -> Served:
    out = log.open("wb")
    proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if requests.get(url + "/health", timeout=2).status_code == 200:
                return Served(proc, url)
        except requests.RequestException:
            pass
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError(f"{argv} did not answer in 60 s:\n{log.read_text()}")


def stop(served: Served) -> None:
    os.killpg(served.proc.pid, signal.SIGTERM)
    served.proc.wait(10)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Served]]:
    logs = tmp_path_factory.mktemp("front")
    out: dict[str, Served] = {}
    try:
        port = ports.free_port()
        out["standin"] = start([sys.executable, "tests/programs/openai_standin.py", "--port", str(port), "--delay-ms",
                                "1", "--chunk-ms", "1", "--chunks", "4"], port, log=logs / "standin.log")  # fmt: skip
        port = ports.free_port()
        out["echo"] = start([sys.executable, "-m", "modelserve_echo.server", "--port", str(port), "--served-model-name",
                             "parrot", "--prefix", ""], port, env={"PYTHONPATH": str(ROOT / "tests" / "plugin")}, log=logs / "echo.log")  # fmt: skip
        for name, upstream, extra, key in (("front", "standin", [], "k"), ("plain", "echo", ["--no-tools", "--no-structured-output"], "")):
            port = ports.free_port()
            argv = [sys.executable, "-m", "launcher.front", "--host", "127.0.0.1", "--port", str(port), "--upstream",
                    out[upstream].url, "--translate", "messages,count_tokens,responses", *extra]  # fmt: skip
            out[name] = start(argv, port, env={"MODELSERVE_API_KEY": key}, log=logs / f"{name}.log")
        yield out
    finally:
        for served in out.values():
            stop(served)


def test_other_routes_pass_through_untouched_and_stream_chunk_by_chunk(servers: dict[str, Served]) -> None:
    front, direct = servers["front"].url, servers["standin"].url
    assert requests.get(front + "/v1/models", timeout=10).json() == requests.get(direct + "/v1/models", timeout=10).json()
    body = {"model": "standin", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with requests.post(front + "/v1/chat/completions", json=body, stream=True, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert len(events) == 5 and events[-1] == b"data: [DONE]"  # 4 chunks and [DONE], as the engine sent them
    assert requests.get(front + "/nope", timeout=10).status_code == 404  # the engine's own 404


def test_messages_and_responses_are_translated_with_the_key_checked(servers: dict[str, Served]) -> None:
    front = servers["front"].url
    r = requests.post(front + "/v1/messages", json=ASK, timeout=10)
    assert r.status_code == 401 and anthropic_types.problems("error", r.json()) == []
    assert r.json()["error"]["type"] == "authentication_error"
    r = requests.post(front + "/v1/messages", json=ASK, headers={"x-api-key": "k"}, timeout=10)
    assert r.status_code == 200 and anthropic_types.problems("message", r.json()) == [], r.text
    assert r.json()["content"][0]["text"] == "The quick brown fox"
    with requests.post(front + "/v1/messages", json={**ASK, "stream": True}, headers={"x-api-key": "k"}, stream=True,
                       timeout=10) as r:  # fmt: skip
        data = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith(b"data: ")]
    assert [d["type"] for d in data][:3] == ["message_start", "ping", "content_block_start"]
    assert [p for d in data for p in anthropic_types.problems("event", d)] == []
    assert data[-2]["usage"] == {"output_tokens": 4}  # the stand-in streams no usage: the pieces are counted
    count = requests.post(front + "/v1/messages/count_tokens", json={"model": "standin", "messages": ASK["messages"]},
                          headers={"Authorization": "Bearer k"}, timeout=10)  # fmt: skip
    assert count.json() == {"input_tokens": 8}
    r = requests.post(front + "/v1/responses", json={"model": "standin", "input": "hi"},
                      headers={"Authorization": "Bearer k"}, timeout=10)  # fmt: skip
    assert r.status_code == 200 and problems("response", r.json()) == [], r.text
    follow = {"model": "standin", "input": "and?", "previous_response_id": r.json()["id"], "stream": True}
    with requests.post(front + "/v1/responses", json=follow, headers={"Authorization": "Bearer k"}, stream=True,
                       timeout=10) as r:  # fmt: skip
        data = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith(b"data: ")]
    assert [p for d in data for p in event_problems(d)] == [] and data[-1]["type"] == "response.completed"


def test_engine_errors_and_what_the_engine_cannot_do_come_back_in_the_surfaces_shape(servers: dict[str, Served]) -> None:
    plain = servers["plain"].url  # the echo engine: no tools, no structured output
    r = requests.post(plain + "/v1/messages", json={**ASK, "model": "nope"}, timeout=10)
    assert r.status_code == 404 and r.json() == {"type": "error", "error": {"type": "not_found_error",
                                                                           "message": "The model `nope` does not exist."}}  # fmt: skip
    r = requests.post(plain + "/v1/messages", json={**ASK, "model": "parrot"}, timeout=10)
    assert r.status_code == 200 and r.json()["content"][0]["text"] == "hi"
    forced = {**ASK, "model": "parrot", "tools": [{"name": "f", "input_schema": {"type": "object"}}],
              "tool_choice": {"type": "any"}}  # fmt: skip
    r = requests.post(plain + "/v1/messages", json=forced, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("tool_choice: this deployment's engine")
    shaped = {"model": "parrot", "input": "hi", "text": {"format": {"type": "json_object"}}}
    r = requests.post(plain + "/v1/responses", json=shaped, timeout=10)
    assert r.status_code == 400 and r.json()["error"]["param"] == "text.format" and problems("error", r.json()) == []
    # A history with tool calls reaches an engine without tools as text it can read.
    history = {"model": "parrot", "input": [{"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                                            {"type": "function_call_output", "call_id": "c1", "output": "42"}]}  # fmt: skip
    r = requests.post(plain + "/v1/responses", json=history, timeout=10)
    assert r.status_code == 200 and r.json()["output"][0]["content"][0]["text"] == "[result of tool call c1]\n42"
    r = requests.post(plain + "/v1/messages", data=b"{not json", timeout=10)
    assert r.status_code == 400 and anthropic_types.problems("error", r.json()) == []


def test_an_engine_that_is_gone_is_a_502_in_the_surfaces_shape(tmp_path: Path) -> None:
    port, dead = ports.free_port(), ports.free_port()
    argv = [sys.executable, "-m", "launcher.front", "--host", "127.0.0.1", "--port", str(port), "--upstream",
            f"http://127.0.0.1:{dead}", "--translate", "messages"]  # fmt: skip
    log = tmp_path / "front.log"
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, r = time.monotonic() + 60, None
        while time.monotonic() < deadline and r is None:
            try:
                r = requests.post(f"http://127.0.0.1:{port}/v1/messages", json=ASK, timeout=5)
            except requests.ConnectionError:
                time.sleep(0.1)
        assert r is not None and r.status_code == 502, log.read_text()
        assert anthropic_types.problems("error", r.json()) == [] and "did not answer" in r.json()["error"]["message"]
        assert requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).status_code == 502
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
