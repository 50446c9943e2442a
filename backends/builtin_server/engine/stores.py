"""Which KV store a model gets: the slot store (prefix cache, in-place KV) when a check at start-up
proves the model computes the same with it, else round two's padded store without a prefix cache.

The slot store takes over the model's attention (kv_slots.gqa_attention) and hands it 4-D masks of
its own, so it can serve only models whose every layer attends to the whole context: a sliding
window or a model's own attention code would silently read the wrong tokens. The check runs the
model both ways on two rows whose prompts start at different columns and compares the logits.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from backends.builtin_server.engine.kv_slots import (
    ATTENTION,
    ForwardCache,
    ForwardRows,
    Geometry,
    SlotBuffer,
    register_attention,
)
from backends.builtin_server.engine.kv_store import KvStore
from backends.builtin_server.engine.padded_store import PaddedStore
from backends.builtin_server.engine.slot_store import SlotStore

log = logging.getLogger("modelserve.server")

# How far the slot path's logits may drift from the model's own (different kernels, different
# summation order), relative to the logits' spread: float32 drifts ~1e-6, half precision ~1e-3.
TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-8}
HALF_TOLERANCE = 2e-2


def choose_store(model: Any, *, budget: int, max_rows: int, turn_tokens: int, prefix_cache: bool,
                 context: int | None) -> KvStore:  # fmt: skip
    why_not = slot_store_refusal(model)
    if why_not is None:
        if not prefix_cache:
            log.info("prefix cache: off (--no-prefix-cache)")
        return SlotStore(model, budget=budget, max_rows=max_rows, turn_tokens=turn_tokens,
                         prefix_cache=prefix_cache, context=context)  # fmt: skip
    log.warning("prefix cache: off for this model (%s); requests are served without it", why_not)
    return PaddedStore(model, budget=budget, turn_tokens=turn_tokens)


def slot_store_refusal(model: Any) -> str | None:
    """Why the slot store cannot serve ``model`` (None: it can; the model is switched to its attention)."""
    cfg = model.config
    types = set(getattr(cfg, "layer_types", None) or ["full_attention"])
    if types != {"full_attention"}:
        return f"its layers are {', '.join(sorted(types))}, not all full attention"
    if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True):
        return f"it attends through a sliding window of {cfg.sliding_window} tokens"
    if not hasattr(model, "set_attn_implementation"):
        return "its attention cannot be switched (remote code?)"
    original = getattr(cfg, "_attn_implementation", None) or "sdpa"
    if original == ATTENTION:  # an engine before this one (tests) switched it: compare with the model's own
        original = getattr(model, "_modelserve_attention_was", "sdpa")
        model.set_attn_implementation(original)
    try:
        drift = _probe(model, original)
    except Exception as exc:  # any failure means: not this path
        model.set_attn_implementation(original)
        return f"the start-up check failed: {type(exc).__name__}: {exc}"
    if drift is not None:
        model.set_attn_implementation(original)
        return f"the start-up check found different logits (relative drift {drift:.2g})"
    model._modelserve_attention_was = original
    return None


@torch.inference_mode()
def _probe(model: Any, original: str) -> float | None:
    """Two prompts, their second halves prefilled together from different columns, then one
    decoding step, against the model's own forward pass; the drift when it is too large."""
    device = model.device
    vocab = int(model.config.vocab_size)
    generator = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, vocab, (n,), generator=generator).tolist() for n in (11, 6)]
    nexts = [int(torch.randint(0, vocab, (1,), generator=generator)) for _ in prompts]
    references = [model(input_ids=torch.tensor([p + [t]], device=device)).logits[0, -2:].float() for p, t in zip(prompts, nexts, strict=True)]
    register_attention()
    model.set_attn_implementation(ATTENTION)
    buffer = SlotBuffer(Geometry.of(model))
    buffer.reserve(len(prompts), 32)
    halves = [len(p) // 2 for p in prompts]
    got_prompt = _forward(model, buffer, [0, 0], [p[:h] for p, h in zip(prompts, halves, strict=True)])
    got_prompt = _forward(model, buffer, halves, [p[h:] for p, h in zip(prompts, halves, strict=True)])
    got_next = _forward(model, buffer, [len(p) for p in prompts], [[t] for t in nexts])
    worst = 0.0
    for ref, a, b in zip(references, got_prompt, got_next, strict=True):
        spread = float(ref.abs().max()) or 1.0
        worst = max(worst, float((ref[0] - a).abs().max()) / spread, float((ref[1] - b).abs().max()) / spread)
    limit = TOLERANCE.get(model.dtype, HALF_TOLERANCE)
    return worst if worst > limit else None


def _forward(model: Any, buffer: SlotBuffer, starts: list[int], pieces: list[list[int]]) -> list[torch.Tensor]:
    rows = ForwardRows(starts, [len(p) for p in pieces])
    columns, positions, mask = rows.tensors(model.device, buffer.width)
    ids = torch.zeros(columns.shape, dtype=torch.long, device=model.device)
    for r, piece in enumerate(pieces):
        ids[r, rows.queries - len(piece) :] = torch.tensor(piece, device=model.device)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
                past_key_values=ForwardCache(buffer, 0, columns, rows.visible))  # fmt: skip
    return [row.float() for row in out.logits[:, -1]]
