"""`modelserve bench`'s arithmetic and renderings, on samples made by hand: what it counts, how it
summarises, the ratios it prints, the options it refuses, the prompts it sends."""

from __future__ import annotations

import json

import jsonschema
import pytest

from launcher.bench.loadgen import Sample
from launcher.bench.results import BenchReport, Result, Run, TargetInfo, percentile, pooled, ratios, summarise
from launcher.bench.workloads import (
    CHARS_PER_TOKEN,
    BenchSettings,
    Workload,
    build_settings,
    first_message,
    next_message,
    system_prompt,
)
from launcher.cli.benchmark import bench_text
from launcher.core.errors import ConfigError
from tests.golden import GOLDEN, assert_golden

AGENT = Workload(kind="agent", tokens=32, concurrency=2, sessions=2, turns=3, system_tokens=300)
CHAT = Workload(kind="chat", tokens=64, concurrency=4, requests=4)


def sample(session: int, turn: int, ttft: float | None, latency: float, completion: int = 32, prompt: int = 100,
           cached: int | None = None, error: str | None = None) -> Sample:  # fmt: skip
    return Sample(session=session, turn=turn, start=0.0, latency=latency, ttft=ttft, prompt_tokens=prompt,
                  completion_tokens=completion, cached_tokens=cached, error=error)  # fmt: skip


def agent_samples(first: float, later: float, cached: int | None) -> list[Sample]:
    return [sample(s, t, first if t == 1 else later + s / 10, 2.0 + t, prompt=300 + 50 * t,
                   cached=None if cached is None or t == 1 else cached)
            for s in range(2) for t in (1, 2, 3)]  # fmt: skip


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]
    assert (percentile(values, 0.5), percentile(values, 0.95), percentile(values, 1.0)) == (10.0, 19.0, 20.0)
    assert percentile([3.0], 0.95) == 3.0
    assert percentile([], 0.5) is None


def test_a_chat_run_counts_usage_errors_and_short_replies() -> None:
    samples = [sample(0, 1, None, 1.0), sample(1, 1, None, 3.0, completion=60), sample(2, 1, None, 2.0),
               sample(3, 1, None, 9.0, completion=0, prompt=0, error="HTTP 400: too long")]  # fmt: skip
    st = summarise(CHAT, samples, wall_s=4.0)
    assert (st.requests, st.errors, st.error_examples) == (4, 1, ["HTTP 400: too long"])
    assert (st.completion_tokens, st.prompt_tokens, st.tokens_per_s) == (124, 300, 31.0)
    assert st.short_replies == 3  # 32, 60 and 32 of the 64 asked; the failed one is not a reply
    assert (st.latency_p50_s, st.latency_p95_s, st.ttft_p50_s) == (2.0, 3.0, None)
    assert (st.turns, st.first_turn_ttft_p50_s, st.later_turns_ttft_p50_s, st.cached_tokens) == ([], None, None, None)


def test_an_agent_run_reports_ttft_by_turn_and_cached_tokens() -> None:
    st = summarise(AGENT, agent_samples(first=4.0, later=0.5, cached=280), wall_s=10.0)
    assert [(t.turn, t.requests, t.ttft_p50_s, t.ttft_max_s, t.prompt_tokens, t.cached_tokens) for t in st.turns] == [
        (1, 2, 4.0, 4.0, 700, None), (2, 2, 0.55, 0.6, 800, 560), (3, 2, 0.55, 0.6, 900, 560)]  # fmt: skip
    assert (st.first_turn_ttft_p50_s, st.later_turns_ttft_p50_s) == (4.0, 0.55)
    assert st.cached_tokens == 1120 and st.prompt_tokens == 2400
    assert st.tokens_per_s == pytest.approx(19.2)


def test_rounds_pool_their_samples_and_walls() -> None:
    one = agent_samples(first=4.0, later=0.5, cached=None)
    st = pooled(AGENT, [(one, 10.0), (one, 6.0)])
    assert (st.requests, st.completion_tokens, st.wall_s, st.tokens_per_s) == (12, 384, 16.0, 24.0)


def test_ratios_put_the_first_target_over_each_other_one() -> None:
    a = summarise(AGENT, agent_samples(first=4.0, later=0.5, cached=280), wall_s=8.0)
    b = summarise(AGENT, agent_samples(first=2.0, later=1.0, cached=None), wall_s=16.0)
    results = [Result(workload=AGENT.label, target=n, stats=s) for n, s in (("ours", a), ("theirs", b))]
    (ratio,) = ratios(results, ["ours", "theirs"])
    assert (ratio.target, ratio.baseline, ratio.tokens_per_s) == ("ours", "theirs", 2.0)
    assert (ratio.first_turn_ttft_p50, ratio.later_turns_ttft_p50) == (2.0, round(0.55 / 1.05, 4))
    assert ratios(results[:1], ["ours"]) == []


def test_options_no_chosen_workload_uses_are_refused() -> None:
    common = {"tokens": None, "requests": None, "turns": None, "system_tokens": None, "rounds": 1, "warmup": 1,
              "min_tokens": True, "request_timeout": 60.0, "salt": "s"}  # fmt: skip
    with pytest.raises(ConfigError, match="--sessions shapes the agent workload") as exc:
        build_settings(kinds=("chat",), concurrency=(), sessions=3, **common)  # type: ignore[arg-type]
    assert exc.value.hint == "add -w agent, or leave --sessions out"
    settings = build_settings(kinds=("chat", "stream", "agent", "chat"), concurrency=(1, 8, 1), sessions=8,
                              **common)  # type: ignore[arg-type]  # fmt: skip
    assert [w.label for w in settings.workloads] == ["chat c=1", "chat c=8", "stream c=1", "stream c=8",
                                                     "agent 8x4 c=1", "agent 8x4"]  # fmt: skip
    assert [w.tokens for w in settings.workloads] == [64, 64, 64, 64, 32, 32]
    assert settings.request_count == 4 * 16 + 2 * 32


def test_the_agent_prompt_is_deterministic_sized_and_salted() -> None:
    prompt = system_prompt(1200, "abc")
    assert prompt == system_prompt(1200, "abc")
    assert 1200 * CHARS_PER_TOKEN <= len(prompt) < 1200 * CHARS_PER_TOKEN + 120
    other = system_prompt(1200, "xyz")
    assert other.splitlines()[0] == "Run xyz." and other.splitlines()[1:] == prompt.splitlines()[1:]
    assert all(f"- {name}:" in prompt for name in ("web_search", "read_file", "write_file", "run_python",
                                                   "get_weather", "send_email"))  # fmt: skip
    assert first_message(0) != first_message(1) and next_message(0, 2) != next_message(0, 3)


def report() -> BenchReport:
    settings = BenchSettings(workloads=(CHAT, AGENT), salt="s")
    chat_a = summarise(CHAT, [sample(i, 1, None, 1.0 + i, completion=64) for i in range(4)], 4.0)
    chat_b = summarise(CHAT, [sample(i, 1, None, 2.0 + i, completion=64, error="HTTP 503: busy" if i == 3 else None)
                              for i in range(4)], 8.0)  # fmt: skip
    agent_a = summarise(AGENT, agent_samples(4.0, 0.5, 280), 8.0)
    agent_b = summarise(AGENT, agent_samples(2.0, 1.0, None), 16.0)
    results = [Result(workload=w, target=t, stats=s) for w, t, s in (
        (CHAT.label, "ours", chat_a), (CHAT.label, "theirs", chat_b), (AGENT.label, "ours", agent_a),
        (AGENT.label, "theirs", agent_b))]  # fmt: skip
    runs = [Run(round=1, workload=r.workload, target=r.target, started_s=float(i), stats=r.stats)
            for i, r in enumerate(results)]  # fmt: skip
    return BenchReport(settings=settings, targets=[TargetInfo(label="ours", openai_url="http://127.0.0.1:8000/v1",
                       model="m"), TargetInfo(label="theirs", openai_url="http://127.0.0.1:8001/v1", model="m")],
                       runs=runs, results=results, ratios=ratios(results, ["ours", "theirs"]))  # fmt: skip


def test_the_text_report() -> None:
    assert_golden("bench/report.txt", bench_text(report()) + "\n")


def test_the_json_envelope_keeps_its_schema() -> None:
    """The envelope's JSON Schema is a golden file: a renamed or retyped field shows in review,
    and the envelope validates against it with unknown keys refused."""
    schema = BenchReport.model_json_schema()
    assert_golden("bench/envelope.schema.json", json.dumps(schema, indent=2, sort_keys=True) + "\n")
    envelope = json.loads(json.dumps(report().model_dump(mode="json")))
    jsonschema.validate(envelope, json.loads((GOLDEN / "bench/envelope.schema.json").read_text()))
    assert envelope["version"] == 1
    with pytest.raises(jsonschema.ValidationError, match="unexpected"):
        jsonschema.validate({**envelope, "extra": 1}, schema)
