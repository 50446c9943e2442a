"""GPU discovery and device choice.

Discovery asks NVML (``nvidia-ml-py``) first and falls back to ``nvidia-smi --query-gpu ...
--format=csv``; both are parsed by pure functions so tests drive them with recorded output.
``CUDA_VISIBLE_DEVICES`` is honoured the way CUDA does: only the listed GPUs exist, numbered
0..n-1 in the listed order, and ``--device cuda:1`` means the second *visible* GPU.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from launcher.errors import DeviceError

NVIDIA_SMI_QUERY = "index,uuid,name,memory.total,memory.used,memory.free,utilization.gpu"


@dataclass(frozen=True)
class Gpu:
    index: int  # physical index (nvidia-smi / NVML numbering)
    uuid: str
    name: str
    memory_total_mib: int
    memory_used_mib: int
    memory_free_mib: int
    utilization_pct: int | None = None

    @property
    def free_gib(self) -> float:
        return self.memory_free_mib / 1024


@dataclass(frozen=True)
class DevicePlan:
    kind: Literal["cpu", "cuda"]
    gpus: tuple[Gpu, ...] = ()
    reason: str = ""

    @property
    def tensor_parallel(self) -> int:
        return max(1, len(self.gpus))

    @property
    def cuda_visible_devices(self) -> str | None:
        """Physical ids for the child's CUDA_VISIBLE_DEVICES (its cuda:0.. are then ours)."""
        if self.kind != "cuda":
            return None
        return ",".join(str(g.index) for g in self.gpus)

    def describe(self) -> str:
        if self.kind == "cpu":
            return "CPU"
        names = ", ".join(f"GPU {g.index} ({g.name}, {g.free_gib:.1f} GiB free)" for g in self.gpus)
        return names


# ---- discovery ----------------------------------------------------------------------------


def parse_nvidia_smi_csv(text: str) -> list[Gpu]:
    """Parse ``nvidia-smi --query-gpu=NVIDIA_SMI_QUERY --format=csv,noheader,nounits``."""
    gpus = []
    for line in text.strip().splitlines():
        if not line.strip() or line.lstrip().startswith("index"):
            continue  # blank, or the header line of --format=csv
        # With --format=csv (no "nounits") values carry units: "81559 MiB", "37 %".
        parts = [p.strip().removesuffix(" MiB").removesuffix(" %") for p in line.split(",")]
        if len(parts) < 6:
            raise ValueError(f"unexpected nvidia-smi line: {line!r}")
        util = parts[6] if len(parts) > 6 else ""
        gpus.append(
            Gpu(
                index=int(parts[0]),
                uuid=parts[1],
                name=parts[2],
                memory_total_mib=int(float(parts[3])),
                memory_used_mib=int(float(parts[4])),
                memory_free_mib=int(float(parts[5])),
                utilization_pct=int(float(util)) if util and util not in ("[N/A]", "N/A") else None,
            )
        )
    return gpus


def query_nvidia_smi(run: Callable[[Sequence[str]], str] | None = None) -> list[Gpu] | None:
    """None when nvidia-smi is missing or fails (no driver: it exits 9 with "NVIDIA-SMI has failed")."""
    if run is None:
        exe = shutil.which("nvidia-smi")
        if exe is None:
            return None

        def run(argv: Sequence[str]) -> str:
            return subprocess.run(list(argv), capture_output=True, text=True, timeout=20, check=True).stdout

    try:
        out = run(["nvidia-smi", f"--query-gpu={NVIDIA_SMI_QUERY}", "--format=csv,noheader,nounits"])
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvidia_smi_csv(out)


def query_nvml(nvml: Any = None) -> list[Gpu] | None:
    """None when nvidia-ml-py is not installed or NVML cannot initialise (no driver).

    ``nvml``: the pynvml module (tests pass a replay of recorded values).
    """
    if nvml is None:
        import importlib

        try:
            nvml = importlib.import_module("pynvml")
        except ImportError:
            return None
    pynvml = nvml
    try:
        pynvml.nvmlInit()
    except Exception:  # pynvml.NVMLError and OSError: no driver library
        return None
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            name = pynvml.nvmlDeviceGetName(h)
            uuid = pynvml.nvmlDeviceGetUUID(h)
            try:
                util: int | None = int(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
            except Exception:  # not supported on every board (MIG, some vGPUs)
                util = None
            mib = 1024 * 1024
            gpus.append(
                Gpu(
                    index=i,
                    uuid=uuid.decode() if isinstance(uuid, bytes) else str(uuid),
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    memory_total_mib=int(mem.total // mib),
                    memory_used_mib=int(mem.used // mib),
                    memory_free_mib=int(mem.free // mib),
                    utilization_pct=util,
                )
            )
        return gpus
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def apply_visible_devices(gpus: list[Gpu], visible: str | None) -> list[Gpu]:
    """Filter and order physical GPUs the way CUDA_VISIBLE_DEVICES does.

    CUDA stops at the first entry it cannot match; "" or "-1" hides every GPU.
    """
    if visible is None:
        return list(gpus)
    out: list[Gpu] = []
    for token in (t.strip() for t in visible.split(",")):
        if not token:
            break
        match = None
        if token.lstrip("-").isdigit():
            match = next((g for g in gpus if g.index == int(token)), None)
        else:
            match = next((g for g in gpus if g.uuid == token or g.uuid.startswith(token)), None)
        if match is None or match in out:
            break
        out.append(match)
    return out


def discover(
    env: dict[str, str] | None = None,
    *,
    nvml: Any = None,
    smi: Callable[[Sequence[str]], str] | None = None,
) -> list[Gpu]:
    """The GPUs this process may use, in CUDA's logical order (cuda:0 first).

    NVML first; nvidia-smi when NVML is missing or fails. ``nvml``/``smi`` replace the real
    ones in tests (recorded outputs).
    """
    env = dict(os.environ) if env is None else env
    gpus = query_nvml(nvml)
    if gpus is None:
        gpus = query_nvidia_smi(smi)
    return apply_visible_devices(gpus or [], env.get("CUDA_VISIBLE_DEVICES"))


# ---- choice ---------------------------------------------------------------------------------


def plan(device: str, gpus: list[Gpu], *, count: int | None = None, supports_cpu: bool = True) -> DevicePlan:
    """Turn ``--device`` (auto|cpu|cuda|cuda:0,2) and ``--gpus N`` into a DevicePlan."""
    if device == "cpu":
        return DevicePlan("cpu", (), "--device cpu")
    if device == "auto" and not gpus:
        return DevicePlan("cpu", (), "no GPU found")
    if device.startswith("cuda") and not gpus:
        raise DeviceError(
            f"--device {device} asks for a GPU, but none is visible (no NVIDIA driver, or CUDA_VISIBLE_DEVICES hides them)",
            "use --device cpu, or check `nvidia-smi`",
        )
    if device.startswith("cuda:"):
        wanted = [int(i) for i in device.split(":", 1)[1].split(",")]
        chosen = []
        for i in wanted:
            if i >= len(gpus):
                raise DeviceError(
                    f"--device {device}: cuda:{i} does not exist; visible GPUs are cuda:0..cuda:{len(gpus) - 1}",
                    "pick an index from `modelserve devices`",
                )
            chosen.append(gpus[i])
        return DevicePlan("cuda", tuple(chosen), f"--device {device}")
    n = count or 1
    if n > len(gpus):
        raise DeviceError(f"--gpus {n}: only {len(gpus)} GPU(s) visible", f"use --gpus {len(gpus)} or fewer")
    by_free = sorted(gpus, key=lambda g: (-g.memory_free_mib, g.index))[:n]
    chosen_sorted = tuple(sorted(by_free, key=lambda g: g.index))
    why = "most free memory" if len(gpus) > n else "all visible GPUs"
    return DevicePlan("cuda", chosen_sorted, f"{len(gpus)} GPU(s) found; {n} with {why}")


# ---- memory: will it fit? ------------------------------------------------------------------

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
    import json
    import struct

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


def estimate_memory(model_dir: str | Path, *, dtype: str, max_model_len: int | None = None) -> MemoryEstimate | None:
    """Estimate from a model folder: weights at the serving dtype + KV cache for max_model_len.

    None when the folder has no config.json (a remote model: nothing to read).
    """
    import json

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


def tensor_parallel_problem(model_dir: str | Path, tp: int) -> str | None:
    """vLLM splits attention heads across ranks: the head counts must divide by the TP size."""
    import json

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
    import json

    cfg_path = Path(model_dir) / "config.json"
    if not cfg_path.is_file():
        return None
    try:
        cfg = json.loads(cfg_path.read_text())
    except ValueError:
        return None
    value = cfg.get("torch_dtype") or cfg.get("dtype") or cfg.get("text_config", {}).get("torch_dtype")
    return str(value) if value in ("float32", "float16", "bfloat16") else None
