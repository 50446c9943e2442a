"""`modelserve bench` for real: the CLI against the built-in server on the tiny random-weight model
(by URL) and against the Ollama stand-in started by `modelserve up` (by deployment NAME). What it
counts is checked against what the servers counted themselves: the built-in server's Prometheus
counters, and the stand-in's deterministic replies. No timing asserts: times are only required to
exist, and runs to follow one another."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from launcher.bench.runner import agent_salt
from launcher.bench.workloads import first_message, next_message, short_prompt, system_prompt
from launcher.process import ports
from tests.e2e.conftest import modelserve_cmd
from tests.golden import GOLDEN
from tests.ollama_standin.generation import pieces, reply_for
from tests.ollama_standin.harness import env_with_standin
from tests.servers import ServerProcess, StartServer

pytestmark = pytest.mark.usefixtures("cleanup_deployments")
Run = Callable[..., subprocess.CompletedProcess[str]]
LIMIT = 8  # the built-in server's --max-new-tokens-limit here: asking for more is refused


@pytest.fixture(scope="module")
def tiny(start_server: StartServer, tiny_model_dir: Path) -> Iterator[ServerProcess]:  # noqa: F811
    server = start_server(tiny_model_dir, "--max-batch-size", "4", "--max-new-tokens-limit", str(LIMIT))
    yield server
    server.stop()  # now, not when the session ends


@pytest.fixture()
def ms(cli_env: dict[str, str], tmp_path: Path) -> Run:
    """The real `modelserve` CLI, with the Ollama stand-in as `ollama` on PATH."""
    env = env_with_standin(cli_env)
    env["OLLAMA_MODELS"] = str(tmp_path / "ollama-models")
    env.pop("MODELSERVE_API_KEY", None)

    def run(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*modelserve_cmd(), *args], capture_output=True, text=True, env=env, cwd=tmp_path,
                              timeout=timeout)  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(f"modelserve {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    return run


@pytest.fixture()
def standin(ms: Run, tmp_path: Path) -> str:
    """An Ollama deployment named "qw" (the stand-in), for bench to find by its record."""
    ms("up", "-b", "ollama", "-m", "qwen2.5:0.5b", "-p", str(ports.free_port()), "--name", "qw",
       "--agentscope-config", str(tmp_path / "c.json"))  # fmt: skip
    return "qw"


def envelope(out: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(out.stdout)
    jsonschema.validate(report, json.loads((GOLDEN / "bench/envelope.schema.json").read_text()))
    return report


def stats_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["workload"]: r["stats"] for r in report["results"]}


def test_built_in_server_counts_match_its_own_counters(tiny: ServerProcess, ms: Run) -> None:
    before = tiny.metrics()
    out = ms("bench", tiny.url, "-w", "chat", "-w", "stream", "-w", "agent", "-c", "3", "--requests", "5",
             "--tokens", "6", "--sessions", "3", "--turns", "3", "--system-tokens", "120", "--warmup", "0", "--json")  # fmt: skip
    after = tiny.metrics()
    report = envelope(out)
    assert report["targets"] == [{"label": tiny.url.split("//")[1], "openai_url": tiny.url + "/v1", "model": "tiny"}]
    stats = stats_of(report)
    assert list(stats) == ["chat c=3", "stream c=3", "agent 3x3"]
    for name, requests in (("chat c=3", 5), ("stream c=3", 5), ("agent 3x3", 9)):
        st = stats[name]
        # min_tokens = max_tokens, which the built-in server honours: every reply is exactly 6 tokens.
        assert (st["requests"], st["errors"], st["completion_tokens"], st["short_replies"]) == (requests, 0, 6 * requests, 0)
        assert st["tokens_per_s"] > 0 and st["latency_p50_s"] is not None
        assert (st["ttft_p50_s"] is None) == (name == "chat c=3")
    counted = {key: sum(st[f"{key}_tokens"] for st in stats.values()) for key in ("prompt", "completion")}
    assert counted == {key: after[f"modelserve_{key}_tokens_total"] - before.get(f"modelserve_{key}_tokens_total", 0)
                       for key in ("prompt", "completion")}  # fmt: skip
    ok = 'modelserve_requests_total{route="/v1/chat/completions",status="200"}'
    assert after[ok] - before.get(ok, 0) == 19
    hits = "modelserve_prefix_cache_hit_tokens_total"  # what its prefix cache served, from usage
    assert sum(st["cached_tokens"] or 0 for st in stats.values()) == after[hits] - before.get(hits, 0)

    # Each turn resends the history with the real replies in it: every session's prompt grows.
    turns = stats["agent 3x3"]["turns"]
    assert [(t["turn"], t["requests"], t["errors"]) for t in turns] == [(1, 3, 0), (2, 3, 0), (3, 3, 0)]
    growth = [b["prompt_tokens"] - a["prompt_tokens"] for a, b in zip(turns, turns[1:], strict=False)]
    assert all(g >= 3 * 6 for g in growth), growth
    assert all(t["cached_tokens"] > 0 for t in turns[1:]), turns  # the history before the new turn is cached
    assert stats["agent 3x3"]["first_turn_ttft_p50_s"] is not None
    assert stats["agent 3x3"]["later_turns_ttft_p50_s"] is not None


def test_refused_requests_are_counted_as_errors_and_exit_21(tiny: ServerProcess, ms: Run) -> None:
    bad = 'modelserve_requests_total{route="/v1/chat/completions",status="400"}'
    before = tiny.metrics().get(bad, 0)
    out = ms("bench", tiny.url, "--requests", "3", "-c", "2", "--tokens", str(LIMIT + 1), "--warmup", "0", "--json",
             check=False)  # fmt: skip
    assert out.returncode == 21, out.stderr
    st = stats_of(envelope(out))["chat c=2"]
    assert (st["requests"], st["errors"], st["completion_tokens"], st["tokens_per_s"]) == (3, 3, 0, 0.0)
    assert len(st["error_examples"]) == 1 and st["error_examples"][0].startswith("HTTP 400: ")
    assert tiny.metrics()[bad] - before == 3
    assert "error: 3 requests failed; first: " in out.stderr and "HTTP 400" in out.stderr


def test_ollama_stand_in_by_name_counts_its_replies(standin: str, ms: Run) -> None:
    """The stand-in answers "Stand-in reply from MODEL: <last user message>" cut to max_tokens,
    a word a token, and ignores min_tokens: bench must count exactly those words."""
    out = ms("bench", standin, "-w", "stream", "-w", "agent", "--requests", "4", "-c", "2", "--sessions", "2",
             "--turns", "3", "--tokens", "12", "--system-tokens", "80", "--json")  # fmt: skip
    report = envelope(out)
    assert report["targets"][0]["label"] == "qw" and report["targets"][0]["model"] == "qwen2.5:0.5b"
    stats = stats_of(report)
    model = "qwen2.5:0.5b"

    stream = stats["stream c=2"]
    replies = [reply_for(model, short_prompt(i), 12)[0] for i in range(4)]
    assert stream["completion_tokens"] == sum(len(r) for r in replies)
    assert stream["prompt_tokens"] == sum(len(pieces(short_prompt(i))) for i in range(4))
    assert stream["short_replies"] == sum(1 for r in replies if len(r) < 12) > 0
    assert stream["cached_tokens"] is None and stream["errors"] == 0

    system = system_prompt(80, agent_salt(report["settings"]["salt"], 0, 1))
    prompt = completion = 0
    for s in range(2):
        history = [system, first_message(s)]
        for turn in range(1, 4):
            reply = reply_for(model, history[-1], 12)[0]
            prompt += sum(len(pieces(text)) for text in history)
            completion += len(reply)
            history += ["".join(reply), next_message(s, turn + 1)]
    agent = stats["agent 2x3"]
    assert (agent["requests"], agent["errors"], agent["prompt_tokens"], agent["completion_tokens"]) == (
        6, 0, prompt, completion)  # fmt: skip

    text = ms("bench", standin, "--requests", "2", "-c", "1", "--tokens", "12").stdout
    assert "note: qw chat c=1: 2 replies shorter than asked" in text


def test_compare_interleaves_the_targets_round_by_round(tiny: ServerProcess, standin: str, ms: Run) -> None:
    out = ms("bench", tiny.url, "--compare", standin, "-w", "chat", "-w", "agent", "--rounds", "2", "--requests", "2",
             "-c", "2", "--sessions", "2", "--turns", "2", "--tokens", "4", "--system-tokens", "60", "--warmup", "0",
             "--json")  # fmt: skip
    report = envelope(out)
    ours = tiny.url.split("//")[1]
    assert [(r["round"], r["workload"], r["target"]) for r in report["runs"]] == [
        (1, "chat c=2", ours), (1, "chat c=2", "qw"), (1, "agent 2x2", ours), (1, "agent 2x2", "qw"),
        (2, "chat c=2", "qw"), (2, "chat c=2", ours), (2, "agent 2x2", "qw"), (2, "agent 2x2", ours)]  # fmt: skip
    runs = report["runs"]
    for a, b in zip(runs, runs[1:], strict=False):  # one after the other, never two at once
        assert a["started_s"] + a["stats"]["wall_s"] <= b["started_s"] + 1e-3
    pooled = {(r["workload"], r["target"]): r["stats"] for r in report["results"]}
    assert pooled[("chat c=2", ours)]["requests"] == 4 and pooled[("agent 2x2", "qw")]["requests"] == 8
    ratio = {r["workload"]: r for r in report["ratios"]}
    assert set(ratio) == {"chat c=2", "agent 2x2"} and ratio["chat c=2"]["baseline"] == "qw"
    assert ratio["chat c=2"]["tokens_per_s"] == pytest.approx(
        pooled[("chat c=2", ours)]["tokens_per_s"] / pooled[("chat c=2", "qw")]["tokens_per_s"], rel=1e-3)


def test_targets_that_cannot_be_measured_are_refused(standin: str, ms: Run) -> None:
    dead = ms("bench", f"http://127.0.0.1:{ports.free_port()}", check=False)
    assert dead.returncode == 20 and "does not answer GET" in dead.stderr and "fix: start it" in dead.stderr
    assert ms("bench", "nosuch", check=False).returncode == 10
    twice = ms("bench", standin, "--compare", standin, check=False)
    assert twice.returncode == 3 and "qw is named twice" in twice.stderr
    wrong = ms("bench", standin, "--model", "nosuch", "--requests", "2", "-c", "1", "--warmup", "0", check=False)
    assert wrong.returncode == 21
    assert 'error: qw chat c=1: HTTP 404: model "nosuch" not found' in wrong.stdout
