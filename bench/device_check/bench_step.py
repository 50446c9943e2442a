"""Step 4: `modelserve bench` against the served deployment: short prompts at concurrency 1 and 8,
then agent sessions that resend their history, as ratios measured in this one run.

Its interface is `modelserve bench NAME -w chat|stream|agent -c N --sessions S --turns K --json`
(README: Measuring a deployment); a build without the command skips the step and says so.
"""

from __future__ import annotations

from typing import Any

from bench.device_check.harness import Ctx
from bench.device_check.serving import NAME

# (chat requests, new tokens a request, agent sessions, turns, system prompt tokens, agent tokens a turn)
SHAPE = {"cuda": (16, 64, 8, 3, 1200, 32), "cpu": (4, 8, 2, 2, 150, 8)}


def bench_step(ctx: Ctx, record: dict[str, Any] | None) -> None:
    with ctx.summary.step("bench", "modelserve bench: chat at c=1 and c=8, agent sessions; ratios", ctx.out) as step:
        if record is None:
            step.status = "skipped"
            step.data["why"] = "no deployment: the serve step failed"
            return
        probe = ctx.modelserve("bench", "--help", timeout=60)
        if probe.code != 0 and "No such command" in probe.stderr:
            step.status = "skipped"
            step.data["why"] = "this build has no `modelserve bench` (issue 19)"
            print(f"  [skip] {step.data['why']}", flush=True)
            return
        requests, tokens, sessions, turns, system, turn_tokens = SHAPE[ctx.device]
        chat = ctx.modelserve("bench", NAME, "-w", "chat", "-c", "1", "-c", "8", "--requests", str(requests),
                              "--tokens", str(tokens), "--json", timeout=240)  # fmt: skip
        agent = ctx.modelserve("bench", NAME, "-w", "agent", "--sessions", str(sessions), "--turns", str(turns),
                               "--system-tokens", str(system), "--tokens", str(turn_tokens), "--json", timeout=240)  # fmt: skip
        results: dict[str, dict[str, Any]] = {}
        for what, res in (("-w chat -c 1 -c 8", chat), ("-w agent", agent)):
            step.check(f"modelserve bench {what} --json succeeds", res.code == 0,
                       None if res.code == 0 else res.why())  # fmt: skip
            if res.code == 0:
                results.update({r["workload"]: r["stats"] for r in res.json()["results"]})
        step.data["results"] = results
        step.data["ratios"] = ratios(results)
        step.check("every request answered", bool(results) and all(s["errors"] == 0 for s in results.values()),
                   {k: s["errors"] for k, s in results.items()})  # fmt: skip


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """Batching (tokens/s at c=8 over c=1) and prefix reuse (agent turns after the first over turn 1)."""

    def over(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a is not None and b else None

    c1, c8 = results.get("chat c=1", {}), results.get("chat c=8", {})
    agent = next((s for k, s in results.items() if k.startswith("agent")), {})
    return {
        "chat_tok_s_c1": c1.get("tokens_per_s"),
        "chat_tok_s_c8": c8.get("tokens_per_s"),
        "chat_c8_over_c1_tok_s": over(c8.get("tokens_per_s"), c1.get("tokens_per_s")),
        "agent_tok_s": agent.get("tokens_per_s"),
        "agent_later_over_first_turn_ttft_p50": over(agent.get("later_turns_ttft_p50_s"),
                                                     agent.get("first_turn_ttft_p50_s")),  # fmt: skip
        "agent_cached_share": over(agent.get("cached_tokens"), agent.get("prompt_tokens")),
    }
