"""The check's models, built on the machine from a config (no download, no weights carried): a
random-weight Llama with a real tokenizer (``tests/tiny_model.py``), loaded afterwards by the
real loading code. On CUDA ~135 M parameters, so that memory and throughput mean something; on
the CPU the server tests' tiny one.

For the fit check, copies of it whose context (``max_position_embeddings``) makes the launcher's
estimate a chosen share of the memory free *now* (NVML on CUDA, the host's available RAM on the
CPU): the estimate is weights + KV cache for the whole context + 1 GiB + 5% of the weights
(README: GPUs), so a share above 1 is a model that does not fit the real free memory.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from bench.device_check.harness import Ctx
from tests.tiny_model import TINY_CONTEXT, TINY_LAYOUT, build_llama, build_tokenizer

GIB = 1024**3
# ~135 M parameters: 12 layers of width 1024, grouped-query attention (16 heads, 4 KV heads).
CUDA_LAYOUT = {"hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 12,
               "num_attention_heads": 16, "num_key_value_heads": 4}  # fmt: skip
CUDA_CONTEXT = 4096
# What the launcher serves at when --dtype is auto: bfloat16 on GPUs, float32 on the CPU.
SERVING_BYTES = {"cuda": 2, "cpu": 4}


def build_served(ctx: Ctx) -> Path:
    folder = ctx.work / "models" / "served"
    folder.mkdir(parents=True)
    layout, context = (CUDA_LAYOUT, CUDA_CONTEXT) if ctx.cuda else (TINY_LAYOUT, TINY_CONTEXT)
    started = time.monotonic()
    build_tokenizer(folder, context=context)
    params = build_llama(folder, context=context, **layout)
    ctx.models["served"] = folder
    ctx.summary.host["model"] = {"layout": layout, "context": context, "parameters": params,
                                 "seconds_to_build": round(time.monotonic() - started, 1)}  # fmt: skip
    return folder


def config(folder: Path) -> dict[str, int]:
    return dict(json.loads((folder / "config.json").read_text()))


def kv_bytes_per_token(cfg: dict[str, int], dtype_bytes: int) -> int:
    heads = cfg["num_attention_heads"]
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    return 2 * cfg["num_hidden_layers"] * cfg.get("num_key_value_heads", heads) * head_dim * dtype_bytes


def sized(ctx: Ctx, name: str, share: float, free: int) -> tuple[Path, dict[str, float]]:
    """A copy of the served model (its files linked) whose estimated need is ``share`` x ``free``."""
    served = ctx.models["served"]
    params = int(ctx.summary.host["model"]["parameters"])
    dtype_bytes = SERVING_BYTES[ctx.device]
    weights = params * dtype_bytes
    overhead = GIB + weights // 20
    cfg = config(served)
    per_token = kv_bytes_per_token(cfg, dtype_bytes)
    context = max(16, int((share * free - weights - overhead) / per_token))
    folder = ctx.work / "models" / name
    folder.mkdir(parents=True)
    for f in served.iterdir():
        if f.name != "config.json":
            (folder / f.name).symlink_to(f)
    (folder / "config.json").write_text(json.dumps({**cfg, "max_position_embeddings": context}, indent=2))
    ctx.models[name] = folder
    need = weights + overhead + context * per_token
    return folder, {"context": context, "need_gib": round(need / GIB, 2), "free_gib": round(free / GIB, 2),
                    "share": share}  # fmt: skip
