"""`modelserve bench`: measure deployments (or server URLs) under load, and compare them."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import click

from launcher.cli.root import main

if TYPE_CHECKING:
    from launcher.bench.results import BenchReport, Stats


@main.command()
@click.argument("target")
@click.option("--compare", "others", multiple=True, help="Another deployment NAME or URL, run interleaved with "
              "TARGET; ratios are TARGET / it. Repeatable.")  # fmt: skip
@click.option("-w", "--workload", "kinds", multiple=True, type=click.Choice(["chat", "stream", "agent"]),
              help="chat (short prompts), stream (the same, streamed: TTFT) or agent (shared system prompt, "
              "sessions, history resent). Repeatable [chat].")  # fmt: skip
@click.option("-c", "--concurrency", multiple=True, type=click.IntRange(1),
              help="chat/stream: requests in flight [8]; agent: sessions at once [all]. Repeatable.")  # fmt: skip
@click.option("--requests", type=click.IntRange(1), help="chat/stream: requests per run [16].")
@click.option("--tokens", type=click.IntRange(1), help="New tokens a request or turn [chat/stream 64, agent 32].")
@click.option("--sessions", type=click.IntRange(1), help="agent: sessions [4].")
@click.option("--turns", type=click.IntRange(1), help="agent: turns a session [4].")
@click.option("--system-tokens", type=click.IntRange(0), help="agent: size of the shared system prompt, about [1200].")
@click.option("--rounds", type=click.IntRange(1), default=1, show_default=True, help="Run everything this often.")
@click.option("--warmup", type=click.IntRange(0), default=1, show_default=True,
              help="Short requests per target first, not counted.")  # fmt: skip
@click.option("--no-min-tokens", is_flag=True, help="Do not send min_tokens (= max_tokens) to make engines generate alike.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=600.0, show_default=True,
              help="Seconds one request may take.")  # fmt: skip
@click.option("--salt", help="Text that starts the agent system prompt [a fresh one: turn 1 starts cold].")
@click.option("--model", help="Model to ask for [the deployment's; for a URL, the one /v1/models lists].")
@click.option("--json", "as_json", is_flag=True, help="Versioned JSON envelope on stdout.")
def bench(target: str, others: tuple[str, ...], model: str | None, as_json: bool, no_min_tokens: bool,
          timeout: float, salt: str | None, **shape: object) -> None:  # fmt: skip
    """Measure a deployment under load, and compare it with others.

    Closed-loop load on the OpenAI route of a deployment NAME or a server URL: tokens/s from the
    server's usage, time to first token and latency p50/p95, errors, cached prompt tokens where
    reported. --compare runs the same workloads on other deployments, interleaved, and prints
    ratios. A URL's API key comes from MODELSERVE_API_KEY. Exit 21 when requests failed.

    \b
    modelserve bench smollm2-135m
    modelserve bench smollm2-135m -w chat -w stream -c 1 -c 8 --compare vllm-smol
    modelserve bench http://127.0.0.1:8000 --model m -w agent --sessions 8 --turns 3 --json
    """
    import secrets

    from launcher.bench import runner, targets, workloads
    from launcher.core.errors import ConfigError, RequestsFailed

    settings = workloads.build_settings(**shape, min_tokens=not no_min_tokens, request_timeout=timeout,  # type: ignore[arg-type]
                                        salt=salt or secrets.token_hex(4))  # fmt: skip
    refs = [target, *others]
    if len(set(refs)) != len(refs):
        raise ConfigError(f"{', '.join(r for r in refs if refs.count(r) > 1)} is named twice", "name each deployment once")
    resolved = [targets.resolve(ref, model=model) for ref in refs]
    with _progress(settings.request_count * len(resolved)) as update:
        result = runner.bench(resolved, settings, update)
    click.echo(json.dumps(result.model_dump(mode="json"), indent=2) if as_json else bench_text(result))
    if result.errors:
        failed = [r for r in result.results if r.stats.errors]
        raise RequestsFailed(f"{_n(result.errors, 'request', 'requests')} failed; first: {failed[0].target} {failed[0].workload}: "
                             f"{failed[0].stats.error_examples[0]}", "see the errors in the report above")  # fmt: skip


@contextlib.contextmanager
def _progress(total: int) -> Iterator[Callable[[int], None]]:
    """A bar on a terminal; elsewhere (a log, CI) a plain line at each quarter."""
    if sys.stderr.isatty():
        with click.progressbar(length=total, label="requests", file=sys.stderr) as bar:
            yield bar.update
        return
    done = 0
    shown = -1

    def update(n: int) -> None:
        nonlocal done, shown
        done += n
        quarter = 4 * done // total
        if quarter != shown:
            shown = quarter
            click.echo(f"requests: {done} of {total} done", err=True)

    update(0)
    yield update


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _pair(a: float | None, b: float | None) -> str:
    return "-" if a is None else f"{_s(a)} / {_s(b)} s"


def _cached(stats: Stats) -> str:
    if stats.cached_tokens is None:
        return "-"
    share = f" ({100 * stats.cached_tokens / stats.prompt_tokens:.0f}%)" if stats.prompt_tokens else ""
    return f"{stats.cached_tokens:,}{share}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def bench_text(report: BenchReport) -> str:
    """The results as a table, per-turn TTFT of agent workloads, then ratios, errors and notes."""
    s = report.settings
    heads = [f"{t.label} ({t.openai_url}, model {t.model})" for t in report.targets]
    lines = [f"bench: {' vs '.join(heads)}; {_n(s.rounds, 'round', 'rounds')}, "
             f"{_n(s.warmup, 'warm-up request', 'warm-up requests')} each",
             ""]  # fmt: skip
    table = [["WORKLOAD", "TARGET", "REQUESTS", "ERRORS", "TOK/S", "TTFT P50 / P95", "LATENCY P50 / P95",
              "PROMPT TOKENS", "CACHED"]]  # fmt: skip
    for i, r in enumerate(report.results):
        st = r.stats
        shown = r.workload if i == 0 or report.results[i - 1].workload != r.workload else ""
        table.append([shown, r.target, str(st.requests), str(st.errors), f"{st.tokens_per_s:.1f}",
                      _pair(st.ttft_p50_s, st.ttft_p95_s), _pair(st.latency_p50_s, st.latency_p95_s),
                      f"{st.prompt_tokens:,}", _cached(st)])  # fmt: skip
    widths = [max(len(row[c]) for row in table) for c in range(len(table[0]))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]
    for r in report.results:
        if r.stats.turns:
            by_turn = ", ".join(f"turn {t.turn} {_s(t.ttft_p50_s)} s" for t in r.stats.turns)
            lines.append(f"{r.workload} {r.target}: TTFT p50 {by_turn}; later turns / turn 1 "
                         f"{_x(_ratio(r.stats.later_turns_ttft_p50_s, r.stats.first_turn_ttft_p50_s))}")  # fmt: skip
    if report.ratios:
        lines += ["", f"ratios {report.ratios[0].target} / other (tok/s: above 1 is faster; times: below 1 is sooner):"]
        for q in report.ratios:
            parts = [(what, value) for what, value in (("tok/s", q.tokens_per_s), ("TTFT p50", q.ttft_p50),
                     ("turn 1 TTFT", q.first_turn_ttft_p50), ("later turns TTFT", q.later_turns_ttft_p50),
                     ("latency p50", q.latency_p50)) if value is not None]  # fmt: skip
            lines.append(f"  {q.workload} vs {q.baseline}: " + "  ".join(f"{n} {_x(v)}" for n, v in parts))
    for r in report.results:
        for example in r.stats.error_examples:
            lines.append(f"error: {r.target} {r.workload}: {example}")
        if r.stats.short_replies:
            lines.append(f"note: {r.target} {r.workload}: {_n(r.stats.short_replies, 'reply', 'replies')} shorter than "
                         "asked (the engine stopped early or ignores min_tokens): tok/s counts what it generated")  # fmt: skip
        if r.stats.estimated_tokens:
            lines.append(f"note: {r.target} {r.workload}: {_n(r.stats.estimated_tokens, 'stream', 'streams')} without usage: "
                         "their tokens are the content chunks counted")  # fmt: skip
    return "\n".join(lines)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _n(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"
