"""The output head packed for oneDNN (CPU, float32): the same logits as the model's own head up to
summation order, the same greedy tokens, idempotent, and left alone where it does not apply."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from backends.builtin_server.engine.output_head import PackedHead, pack_output_head


def load(folder: Path, dtype: torch.dtype = torch.float32) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()


@torch.inference_mode()
def test_packed_head_gives_the_models_logits(tiny_model_dir: Path) -> None:
    model = load(tiny_model_dir)
    ids = torch.arange(3, 40).view(1, -1) % model.config.vocab_size
    before = model(input_ids=ids).logits
    assert pack_output_head(model) is True
    assert isinstance(model.get_output_embeddings(), PackedHead)
    after = model(input_ids=ids).logits
    assert after.shape == before.shape
    assert torch.allclose(after, before, atol=1e-4, rtol=1e-4)
    assert torch.equal(after.argmax(-1), before.argmax(-1))
    # Packing twice keeps the one packed head; its weight is still the model's (tied) weight.
    head = model.get_output_embeddings()
    assert pack_output_head(model) is True and model.get_output_embeddings() is head
    assert head.weight is head.original.weight and head.packed.is_mkldnn


def test_half_precision_keeps_its_own_head(tiny_model_dir: Path) -> None:
    model = load(tiny_model_dir, torch.bfloat16)
    assert pack_output_head(model) is False
    assert isinstance(model.get_output_embeddings(), torch.nn.Linear)


def test_an_engine_serves_through_the_packed_head(make_engine: Any, tiny: tuple[Any, Any]) -> None:
    from backends.builtin_server.engine.request import ChatMessage, GenerationRequest, Sampling, TokenBudget

    engine = make_engine()
    assert isinstance(tiny[0].get_output_embeddings(), PackedHead)
    engine.start()
    request = GenerationRequest(sampling=Sampling(do_sample=False, min_new_tokens=6),
                                budget=TokenBudget(field="max_tokens", max_new_tokens=6),
                                messages=(ChatMessage("user", "hello there"),))  # fmt: skip
    done = engine.submit(request).result(timeout=120)
    assert done.completion_tokens == 6

