"""Memory: what serving a model needs (weights + KV cache), and whether it fits the chosen GPUs."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

from launcher.devices.placement import DevicePlan

GIB = 1024**3
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8,
               "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}  # fmt: skip


@dataclass(frozen=True)
class MemoryEstimate:
    """What serving a model needs on the devices, in bytes, and how the numbers were found."""

    weights: int
    kv_cache: int  # one sequence at max_model_len: what vLLM insists on at start
    overhead: int  # CUDA context, activations, fragmentation
    how: str

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.overhead

    def per_gpu(self, tp: int) -> int:
        # Weights and KV heads are split across tensor-parallel ranks; each rank has its own context.
        return (self.weights + self.kv_cache) // max(1, tp) + self.overhead


def _safetensors_params(path: Path) -> dict[str, int]:
    """Parameter count per dtype from a .safetensors header (8-byte length, then JSON)."""

    with path.open("rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(length))
    counts: dict[str, int] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        n = 1
        for dim in info["shape"]:
            n *= int(dim)
        counts[info["dtype"]] = counts.get(info["dtype"], 0) + n
    return counts


def serving_dtype(dtype: str, kind: str) -> str:
    """The dtype the weights are served at: the deployment's, else float32 on the CPU (fast
    everywhere there) and bfloat16 on GPUs."""
    if dtype != "auto":
        return dtype
    return "float32" if kind == "cpu" else "bfloat16"


def estimate_memory(model_dir: str | Path, *, dtype: str, max_model_len: int | None = None) -> MemoryEstimate | None:
    """Estimate from a model folder: weights at the serving dtype + KV cache for max_model_len.

    None when the folder has no config.json (a remote model: nothing to read).
    """

    folder = Path(model_dir)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        return None
    cfg = json.loads(cfg_path.read_text())
    text_cfg = cfg.get("text_config", cfg)  # multimodal configs nest the language model's
    serve_bytes = DTYPE_BYTES.get(dtype) or _config_dtype_bytes(cfg)

    params = 0
    shards = sorted(folder.glob("*.safetensors"))
    if shards:
        for shard in shards:
            params += sum(_safetensors_params(shard).values())
        how = f"{params / 1e9:.2f} B parameters from {len(shards)} safetensors header(s)"
    else:
        params = _params_from_config(text_cfg)
        how = f"~{params / 1e9:.2f} B parameters estimated from config.json"
    weights = params * serve_bytes

    layers = int(text_cfg.get("num_hidden_layers") or text_cfg.get("n_layer") or 0)
    heads = int(text_cfg.get("num_attention_heads") or text_cfg.get("n_head") or 1)
    kv_heads = int(text_cfg.get("num_key_value_heads") or heads)
    hidden = int(text_cfg.get("hidden_size") or text_cfg.get("n_embd") or 0)
    head_dim = int(text_cfg.get("head_dim") or (hidden // heads if heads else 0))
    context = int(max_model_len or text_cfg.get("max_position_embeddings") or 2048)
    kv = 2 * layers * kv_heads * head_dim * context * serve_bytes
    overhead = GIB + weights // 20  # context + activations; 5% of weights for fragmentation
    how += f"; KV for {context} tokens at {serve_bytes} bytes"
    return MemoryEstimate(weights, kv, overhead, how)


def _config_dtype_bytes(cfg: dict[str, object]) -> int:
    name = str(cfg.get("torch_dtype") or cfg.get("dtype") or "float16")
    return DTYPE_BYTES.get(name, 2)


def _params_from_config(cfg: dict[str, object]) -> int:
    """Decoder-only transformer: embeddings + per layer (attention + gated MLP)."""

    def num(key: str, default: int = 0) -> int:
        value = cfg.get(key, default)
        return int(value) if isinstance(value, int | float) else default

    hidden, vocab, layers = num("hidden_size"), num("vocab_size"), num("num_hidden_layers")
    heads = num("num_attention_heads", 1) or 1
    kv_heads = num("num_key_value_heads", heads)
    head_dim = num("head_dim") or hidden // heads
    inter = num("intermediate_size", 4 * hidden)
    attn = hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim + heads * head_dim * hidden
    mlp = 3 * hidden * inter
    embed = vocab * hidden * (1 if cfg.get("tie_word_embeddings") else 2)
    return embed + layers * (attn + mlp)


@dataclass(frozen=True)
class FitVerdict:
    fits: bool
    message: str
    hint: str = ""


def check_fit(
    estimate: MemoryEstimate,
    plan: DevicePlan,
    *,
    utilization: float | None = None,
    visible: int | None = None,
) -> FitVerdict:
    """Does ``estimate`` fit on ``plan.gpus``? ``utilization``: vLLM's --gpu-memory-utilization,
    the share of each GPU's *total* memory it claims (and which must be free at start)."""
    if plan.kind != "cuda":
        return FitVerdict(True, "CPU: no device memory check")
    tp = plan.tensor_parallel
    need = estimate.per_gpu(tp)
    problems = []
    for g in plan.gpus:
        total, free = g.memory_total_mib * 1024 * 1024, g.memory_free_mib * 1024 * 1024
        budget = int(total * utilization) if utilization else free
        if utilization and budget > free:
            problems.append(
                f"GPU {g.index} has {free / GIB:.1f} GiB free, less than the {utilization:.2f} x "
                f"{total / GIB:.1f} GiB that --gpu-memory-utilization claims"
            )
        elif need > budget:
            problems.append(f"GPU {g.index} has {budget / GIB:.1f} GiB {'usable' if utilization else 'free'}")
    if not problems:
        return FitVerdict(True, f"needs ~{need / GIB:.1f} GiB per GPU ({estimate.how}); fits")
    message = f"the model needs ~{need / GIB:.1f} GiB per GPU ({estimate.how}), but " + "; ".join(problems)
    fixes = []
    if visible is not None and visible > tp:
        fixes.append(f"--gpus {min(visible, tp * 2)} (tensor parallel)")
    fixes += ["a smaller max_model_len", "free the GPUs" if utilization else "a smaller dtype",
              "--force to start anyway"]  # fmt: skip
    return FitVerdict(False, message, "try " + ", ".join(fixes))


def check_host_fit(estimate: MemoryEstimate, available: int, *, dtype: str) -> FitVerdict:
    """Does ``estimate`` fit in the host's ``available`` RAM (a model served on the CPU)? The
    same numbers-and-fixes verdict as the GPU check."""
    need = estimate.total
    if need <= available:
        return FitVerdict(True, f"needs ~{need / GIB:.1f} GiB of RAM ({estimate.how}); {available / GIB:.1f} GiB available")
    message = (f"on the CPU the model needs ~{need / GIB:.1f} GiB of RAM ({estimate.how}), but "
               f"{available / GIB:.1f} GiB is available")  # fmt: skip
    fixes = []
    if DTYPE_BYTES.get(dtype, 2) > 2:
        half = estimate.weights // 2 + estimate.kv_cache // 2 + estimate.overhead
        fixes.append(f"--dtype bfloat16 (~{half / GIB:.1f} GiB)")
    fixes += ["a quantised model through Ollama (-b ollama -m TAG, e.g. llama2:7b-chat)", "a smaller max_model_len",
              "--force to start anyway"]  # fmt: skip
    return FitVerdict(False, message, "try " + ", ".join(fixes))


def tensor_parallel_problem(model_dir: str | Path, tp: int) -> str | None:
    """vLLM splits attention heads across ranks: the head counts must divide by the TP size."""

    cfg_path = Path(model_dir) / "config.json"
    if tp <= 1 or not cfg_path.is_file():
        return None
    cfg = json.loads(cfg_path.read_text())
    cfg = cfg.get("text_config", cfg)
    heads = int(cfg.get("num_attention_heads") or 0)
    kv = int(cfg.get("num_key_value_heads") or heads)
    if heads and heads % tp:
        return f"tensor parallel {tp} does not divide the model's {heads} attention heads"
    if kv and kv % tp and tp % kv:
        return f"tensor parallel {tp} and the model's {kv} KV heads do not divide one another"
    return None



def checkpoint_dtype(model_dir: str | Path) -> str | None:
    """The dtype a model folder's config.json says its weights are in (None when unknown)."""

    cfg_path = Path(model_dir) / "config.json"
    if not cfg_path.is_file():
        return None
    try:
        cfg = json.loads(cfg_path.read_text())
    except ValueError:
        return None
    value = cfg.get("torch_dtype") or cfg.get("dtype") or cfg.get("text_config", {}).get("torch_dtype")
    return str(value) if value in ("float32", "float16", "bfloat16") else None
