"""A model ID in no local cache is checked against the hub before any engine starts: `up` fails
in seconds with the fixes when the hub cannot be reached, is told to stay offline, or has no
such model (round one waited 49 s for the engine's retries)."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.core.errors import ModelNotFound
from launcher.models import resolve
from launcher.models.hub import check_downloadable
from launcher.process import ports

ROOT = Path(__file__).resolve().parents[2]
MODEL = "nobody-here/no-such-model-7b"


@pytest.fixture()
def fake_hub() -> Iterator[str]:
    """A hub API that knows one model (200) and nothing else (404)."""

    class Hub(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == f"/api/models/{MODEL}" else 404)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def up(env_extra: dict[str, str], tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(MODELSERVE_HOME=str(tmp_path / "msh"), **env_extra)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "launcher.cli", "up", "-m", MODEL, "-b", "flask-transformers",
                           "--device", "cpu", "-p", str(ports.free_port())], capture_output=True, text=True, env=env, timeout=60,
                          cwd=tmp_path)  # fmt: skip
    return proc, time.monotonic() - t0


def test_an_unreachable_hub_fails_fast_with_the_fixes(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, not listening: connections are refused
        proc, took = up({"HF_ENDPOINT": f"http://127.0.0.1:{port}"}, tmp_path)
    assert proc.returncode == 4, proc.stderr
    assert "is in no local cache" in proc.stderr and "cannot be reached" in proc.stderr
    assert "huggingface-cli download" in proc.stderr and "HF_ENDPOINT" in proc.stderr and "-m" in proc.stderr
    assert took < 10


def test_a_hub_that_never_answers_fails_within_the_deadline(tmp_path: Path) -> None:
    with socket.socket() as silent:  # listens, never accepts: the request hangs until the deadline
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        proc, took = up({"HF_ENDPOINT": f"http://127.0.0.1:{silent.getsockname()[1]}"}, tmp_path)
    assert proc.returncode == 4, proc.stderr
    assert "did not answer within 6 s" in proc.stderr or "timed out" in proc.stderr, proc.stderr
    assert took < 10


def test_offline_mode_fails_at_once(tmp_path: Path) -> None:
    proc, took = up({"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}, tmp_path)
    assert proc.returncode == 4 and "HF_HUB_OFFLINE=1 forbids downloading it" in proc.stderr
    assert took < 10


def test_the_hub_is_asked_and_its_answer_decides(fake_hub: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", fake_hub)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    check_downloadable(MODEL)  # the hub has it: the engine may download it
    assert resolve(MODEL, prepare=True).kind == "remote"
    with pytest.raises(ModelNotFound, match="has no model 'nobody-here/other'"):
        check_downloadable("nobody-here/other")
    assert resolve("nobody-here/other", prepare=False).kind == "remote"  # plans and dry runs never ask
