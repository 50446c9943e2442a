"""Step 3: the built-in engine in this process on the device, the invariants that matter there.

- greedy rows batched together produce what each produces alone;
- greedy output is the same with the prefix cache and without it (and the cache is used);
- the default KV budget is half the memory free after loading, read the way the machine reads it;
- on CUDA, the slot store (hence the prefix cache) accepts the model at the served dtype.

Equality is token for token, in float32 (where the kernels' summation order moves logits by ~1e-6):
a divergence counts only where the reference's two likeliest tokens are further apart than TIE.
"""

from __future__ import annotations

import os
import time
from typing import Any

from bench.device_check.harness import Ctx, free_memory, gpu_memory
from bench.device_check.models import config, kv_bytes_per_token
from bench.device_check.serving import SYSTEM
from bench.device_check.summary import StepFailed
from tests.tiny_model import VOCABULARY

TIE = 1e-4  # logprob gap below which two tokens are a tie that float noise may break either way
WORDS = VOCABULARY.split()


def engine_step(ctx: Ctx) -> None:
    with ctx.summary.step("engine", "engine invariants on the device: batched = alone, prefix cache = none, "
                          "KV budget from free memory", ctx.out) as step:  # fmt: skip
        if "served" not in ctx.models:
            raise StepFailed("no model: the model step failed")
        import torch

        from backends.builtin_server.engine import loaders

        if not ctx.cuda:
            torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
        device = "cuda:0" if ctx.cuda else "cpu"
        started = time.monotonic()
        loaded = loaders.load(path=str(ctx.models["served"]), loader="transformers", device=device, dtype="float32",
                              trust_remote_code=False)  # fmt: skip
        step.data["load_seconds"] = round(time.monotonic() - started, 2)
        tokens = 32 if ctx.cuda else 12
        _batched_vs_alone(step, loaded, tokens)
        _prefix_cache(step, loaded, tokens)
        _kv_budget(ctx, step, loaded)
        if ctx.cuda:
            _half_precision(ctx, step)
        else:
            step.skip_here("CUDA only: the slot store's start-up check at bfloat16, the dtype GPUs are served at")


def _request(messages: list[tuple[str, str]], tokens: int) -> Any:
    from backends.builtin_server.engine.request import ChatMessage, GenerationRequest, Sampling, TokenBudget

    return GenerationRequest(sampling=Sampling(do_sample=False, min_new_tokens=tokens),
                             budget=TokenBudget(field="max_new_tokens", max_new_tokens=tokens),
                             messages=tuple(ChatMessage(role, text) for role, text in messages), logprobs=2)  # fmt: skip


def _engine(loaded: Any, *, prefix_cache: bool) -> Any:
    from backends.builtin_server.engine.scheduler import Engine

    return Engine(loaded.model, loaded.tokenizer, max_batch_size=8, max_new_tokens_limit=4096, prefix_cache=prefix_cache)


def same(ref: Any, other: Any) -> tuple[bool, str | None]:
    """Token for token, or apart only after a near-tie in either run (see TIE)."""
    a, b = [t.token for t in ref.logprobs], [t.token for t in other.logprobs]
    if a == b:
        return True, None
    i = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    gaps = [run.logprobs[i].top[0][1] - run.logprobs[i].top[1][1] for run in (ref, other)
            if i < len(run.logprobs) and len(run.logprobs[i].top) > 1]  # fmt: skip
    gap = min(gaps) if gaps else float("inf")
    if gap < TIE:
        return True, f"apart from token {i} on, after a near-tie (top-2 logprob gap {gap:.1e})"
    return False, f"token {i}: {a[i:i + 3]} vs {b[i:i + 3]} (top-2 gap {gap:.2e})"


def _compare(step: Any, what: str, refs: list[Any], others: list[Any]) -> None:
    results = [same(r.choices[0], o.choices[0]) for r, o in zip(refs, others, strict=True)]
    notes = [f"#{i}: {note}" for i, (_, note) in enumerate(results) if note]
    step.check(what, all(ok for ok, _ in results), notes or f"{len(results)} identical")


def _batched_vs_alone(step: Any, loaded: Any, tokens: int) -> None:
    # Eight prompts of different lengths (their prefill fits one turn); queued before the engine
    # starts, so they are admitted together and decode in the same steps.
    prompts = [" ".join(WORDS[(7 * i + k) % len(WORDS)] for k in range(3 + 2 * i)) for i in range(8)]
    engine = _engine(loaded, prefix_cache=False)
    step.data["store"] = type(engine.store).__name__
    try:
        futures = [engine.submit(_request([("user", p)], tokens)) for p in prompts]
        engine.start()
        batched = [f.result(timeout=300) for f in futures]
        steps = engine.steps
        alone = [engine.submit(_request([("user", p)], tokens)).result(timeout=300) for p in prompts]
    finally:
        engine.stop()
    step.check("the eight rows decoded in the same steps", steps <= tokens + 1, f"{steps} steps for {tokens} tokens")
    _compare(step, "greedy: each of 8 rows batched = the same prompt alone", batched, alone)


def _prefix_cache(step: Any, loaded: Any, tokens: int) -> None:
    """Four sessions behind one system prompt, two turns each, with and without the prefix cache."""

    def conversation(prefix_cache: bool) -> tuple[list[Any], str]:
        engine = _engine(loaded, prefix_cache=prefix_cache)
        engine.start()
        try:
            firsts = [[("system", SYSTEM), ("user", f"{WORDS[20 + s]} {WORDS[30 + s]} ?")] for s in range(4)]
            turn1 = [f.result(timeout=300) for f in [engine.submit(_request(m, tokens)) for m in firsts]]
            seconds = [[*m, ("assistant", r.text or ""), ("user", "tell me more .")] for m, r in zip(firsts, turn1, strict=True)]
            turn2 = [f.result(timeout=300) for f in [engine.submit(_request(m, tokens)) for m in seconds]]
        finally:
            engine.stop()
        return turn1 + turn2, type(engine.store).__name__

    cached, store = conversation(True)
    plain, _ = conversation(False)
    step.data["prefix_cache_store"] = store
    step.check("the slot store (with the prefix cache) serves the model in float32", store == "SlotStore", store)
    hits = [c.cached_tokens for c in cached]
    step.check("the cache served later prompts (cached prompt tokens per request)", all(h > 0 for h in hits[4:]), hits)
    step.check("and nothing is cached without it", all(p.cached_tokens == 0 for p in plain))
    _compare(step, "greedy: the same replies with the prefix cache and without it", plain, cached)


def _kv_budget(ctx: Ctx, step: Any, loaded: Any) -> None:
    from backends.builtin_server.engine.memory import default_kv_budget, kv_tokens_per_gib

    per_token = kv_bytes_per_token(config(ctx.models["served"]), 4)
    step.check("KV tokens per GiB from the model's geometry", kv_tokens_per_gib(loaded.model) == (1 << 30) // per_token,
               kv_tokens_per_gib(loaded.model))  # fmt: skip
    before = free_memory(ctx)
    budget = default_kv_budget(loaded.model, loaded.device)
    after = free_memory(ctx)
    # CUDA: torch's cudaMemGetInfo and NVML read the same counter; the host's available memory moves.
    slack = 0.03 if ctx.cuda else 0.10
    low, high = min(before, after) / 2 / per_token * (1 - slack), max(before, after) / 2 / per_token * (1 + slack)
    source = "NVML" if ctx.cuda else "psutil"
    step.check(f"default KV budget = half the free memory ({source}) in KV tokens", low <= budget <= high,
               f"{budget} tokens; {source}: {low:.0f}..{high:.0f}")  # fmt: skip
    step.data["default_kv_budget_tokens"] = budget
    if ctx.cuda:
        step.data["nvml_memory"] = gpu_memory()


def _half_precision(ctx: Ctx, step: Any) -> None:
    from backends.builtin_server.engine import loaders
    from backends.builtin_server.engine.stores import slot_store_refusal

    half = loaders.load(path=str(ctx.models["served"]), loader="transformers", device="cuda:0", dtype="bfloat16",
                        trust_remote_code=False)  # fmt: skip
    why = slot_store_refusal(half.model)
    step.check("the slot store's start-up check accepts the model at bfloat16 (prefix cache on where it is served)",
               why is None, why)  # fmt: skip
