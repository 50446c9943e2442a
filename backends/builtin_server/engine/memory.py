"""How much KV cache fits: tokens per GiB for a model, and the default budget from free memory."""

from __future__ import annotations

from typing import Any

import torch


def kv_tokens_per_gib(model: Any) -> int:
    """How many tokens of KV cache one GiB holds for ``model`` (keys and values, every layer)."""
    cfg = model.config
    layers = int(getattr(cfg, "num_hidden_layers", 0) or 1)
    heads = int(getattr(cfg, "num_attention_heads", 1) or 1)
    kv_heads = int(getattr(cfg, "num_key_value_heads", 0) or heads)
    head_dim = int(getattr(cfg, "head_dim", 0) or getattr(cfg, "hidden_size", 64) // heads)
    per_token = 2 * layers * kv_heads * head_dim * torch.finfo(model.dtype).bits // 8
    return max(1, (1 << 30) // per_token)


def free_memory_bytes(device: torch.device) -> int:
    """Memory still free for the cache: VRAM on CUDA; MemAvailable from /proc/meminfo on CPU."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30  # not Linux: assume 4 GiB rather than guess high


def default_kv_budget(model: Any, device: torch.device, share: float = 0.5) -> int:
    """KV tokens that fit in ``share`` of the memory free after loading: the rest stays for
    activations, the allocator's slack and everything else on the machine."""
    return max(1, int(free_memory_bytes(device) * share / (1 << 30) * kv_tokens_per_gib(model)))
