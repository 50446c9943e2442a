"""Fixtures for the built-in server: a tiny real model, and real server processes on free ports.
Every test folder gets them (``pytest_plugins`` in tests/conftest.py); tests import the types
(``ServerProcess``, ``StartServer``) and helpers (``wait_for``, ``free_port``) from here.

The tiny model is a 2-layer Llama with random weights plus a real fast tokenizer with a ChatML
template, so the fast tests exercise the real load / tokenize / generate / batching path without
any big model. Its tokenizer is copied from ``$MODELSERVE_TEST_MODEL`` when that is set, and
otherwise built with the ``tokenizers`` library (WordLevel over a small vocabulary).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.tiny_model import build_llama, build_tokenizer, copy_tokenizer

ROOT = Path(__file__).resolve().parents[1]
MODEL_ENV = "MODELSERVE_TEST_MODEL"
READY_TIMEOUT = 120.0  # first import of torch after an install is slow; a warm start takes ~4 s


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-llama")
    source = os.environ.get(MODEL_ENV)
    if source and (Path(source) / "tokenizer.json").is_file():
        copy_tokenizer(Path(source), folder)
    else:
        build_tokenizer(folder)
    build_llama(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bpe_model_dir(tmp_path_factory: pytest.TempPathFactory, smollm2_dir: Path) -> Path:
    """The tiny model over SmolLM2's byte-level tokenizer (49k tokens), which grammars can drive:
    random weights make it a model that writes anything the grammar lets it."""
    folder = tmp_path_factory.mktemp("tiny-bpe-llama")
    copy_tokenizer(smollm2_dir, folder)
    build_llama(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    name: str
    api_key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 60)
        kwargs.setdefault("headers", self.headers)
        return requests.get(self.url + path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 120)
        kwargs.setdefault("headers", self.headers)
        if body is not None:
            kwargs["json"] = body
        return requests.post(self.url + path, **kwargs)

    def metrics(self) -> dict[str, float]:
        """Prometheus text -> {"name{labels}": value}."""
        out: dict[str, float] = {}
        for line in self.get("/metrics").text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise AssertionError(f"server exited with {code} before it was ready:\n{self.log_tail()}")
            try:
                r = requests.get(self.url + "/health", timeout=2)
                if r.status_code == 200:
                    return
                last = f"/health -> {r.status_code} {r.text[:200]}"
            except requests.RequestException as exc:
                last = f"{type(exc).__name__}"
            time.sleep(0.2)
        raise AssertionError(f"server not ready after {timeout:.0f} s (last: {last}):\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


StartServer = Callable[..., ServerProcess]


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll ``check`` until it holds, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture(scope="session")
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartServer]:
    """Start ``python -m backends.builtin_server`` and wait for /health; every process is stopped at the end."""
    started: list[ServerProcess] = []

    def start(
        model_dir: Path, *args: str, api_key: str | None = None, name: str = "tiny", wait: bool = True
    ) -> ServerProcess:
        port = free_port()
        log_path = tmp_path_factory.mktemp("server-log") / "server.log"
        env = {k: v for k, v in os.environ.items() if k != "MODELSERVE_API_KEY"}
        env.update({"OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
                    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})  # fmt: skip
        if api_key is not None:
            env["MODELSERVE_API_KEY"] = api_key
        argv = [sys.executable, "-m", "backends.builtin_server", "--model", str(model_dir), "--served-model-name", name,
                "--port", str(port), "--threads", "1", *args]  # fmt: skip
        with log_path.open("wb") as log:
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        server = ServerProcess(proc=proc, url=f"http://127.0.0.1:{port}", log_path=log_path, name=name,
                               api_key=api_key)  # fmt: skip
        if api_key is not None:
            server.headers = {"Authorization": f"Bearer {api_key}"}
        started.append(server)
        if wait:
            server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def tiny_server(start_server: StartServer, tiny_model_dir: Path) -> ServerProcess:
    """One shared server on the tiny model (tests must leave it serving)."""
    return start_server(tiny_model_dir, "--max-batch-size", "8")


# ----------------------------------------------------------------------------- engines in-process


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval(), AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture()
def make_engine(tiny: tuple[Any, Any]) -> Iterator[Any]:
    """Engines on the tiny model (or ``model=`` another), stopped after the test."""
    from backends.builtin_server.engine.scheduler import Engine

    engines: list[Engine] = []

    def make(tokenizer: Any = None, *, model: Any = None, **kwargs: Any) -> Engine:
        kwargs.setdefault("max_batch_size", 8)
        kwargs.setdefault("max_new_tokens_limit", 4096)
        engine = Engine(model or tiny[0], tokenizer or tiny[1], **kwargs)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.stop()
