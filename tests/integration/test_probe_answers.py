"""The shared probes against a real HTTP server that answers every request with one status: which
answers are final (waiting cannot change them: 401, 403, 404) and what each says the cause is."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backends.ollama.probes import OllamaVersion
from backends.probes import HttpOk, HttpProbe, OpenAIChatAnswers, OpenAIModelListed, PostLlmAnswers, WorkerRegistered


class Answer(BaseHTTPRequestHandler):
    status = 200

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"error": {"message": f"answered {self.server.status}"}}).encode()  # type: ignore[attr-defined]
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer  # noqa: N815 (http.server's naming)

    def log_message(self, fmt: str, *args: object) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def probes(base: str, key: str | None) -> list[HttpProbe]:
    return [HttpOk(base, key, path="/health"), OpenAIModelListed(base, key, model="m"),
            OpenAIChatAnswers(base, key, model="m"), PostLlmAnswers(base, key), OllamaVersion(base),
            WorkerRegistered(base, model="m")]  # fmt: skip


@pytest.mark.parametrize(("status", "key", "cause"), [
    (401, None, "the server demands an API key (HTTP 401 on "),
    (401, "k", "the server refused the API key it was given (HTTP 401 on "),
    (403, "k", "the server forbids "),
    (404, None, "the server has no such route or model (HTTP 404 on "),
])  # fmt: skip
def test_answers_waiting_cannot_change_are_final_and_named(server: ThreadingHTTPServer, status: int, key: str | None,
                                                           cause: str) -> None:  # fmt: skip
    server.status = status  # type: ignore[attr-defined]
    base = f"http://127.0.0.1:{server.server_address[1]}"
    for probe in probes(base, key):
        if status == 401 and key and not probe.api_key:
            continue  # the probes that send no key cannot have it refused
        result = probe.check(5.0)
        assert (result.ok, result.final) == (False, True), (type(probe).__name__, result)
        assert result.detail.startswith(cause) and f"answered {status}" in result.detail, result.detail
        assert result.fix


@pytest.mark.parametrize("status", [500, 502, 503])
def test_other_failures_may_pass_later(server: ThreadingHTTPServer, status: int) -> None:
    server.status = status  # type: ignore[attr-defined]
    base = f"http://127.0.0.1:{server.server_address[1]}"
    for probe in probes(base, "k"):
        result = probe.check(5.0)
        assert (result.ok, result.final) == (False, False), (type(probe).__name__, result)
        assert f"HTTP {status}" in result.detail
