"""Flask + Transformers: modelserve's built-in server (backends/builtin_server) with the
transformers loader. Serves AgentScope's ``POST /llm/`` and the OpenAI ``/v1`` routes; an embed
or rerank deployment serves ``/v1/embeddings`` or ``/v1/rerank`` (``--task``) instead."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import Field

from backends.base import RERANK_NOTE, AutoChoice, Backend, BackendOptions, Container, PlanContext, render_args
from backends.probes import EmbeddingAnswers, OpenAIChatAnswers, OpenAIModelListed, PostLlmAnswers, RerankAnswers
from launcher.core.capabilities import Capabilities
from launcher.core.deployment import Deployment
from launcher.core.launch import ClientEndpoint, LaunchPlan, ProcessSpec
from launcher.core.model_ref import ResolvedModel
from launcher.core.probe import Probe
from launcher.core.telemetry import Telemetry
from launcher.devices import DevicePlan
from launcher.models.families import family_of
from launcher.models.task import embedding_facts

API_KEY_ENV = "MODELSERVE_API_KEY"
# The built-in server's /metrics (builtin_server/engine/metrics.py) and its request ring
# (builtin_server/http/recent_requests.py); the dashboard's browser test reads them live.
TELEMETRY = Telemetry(
    metrics_path="/metrics", requests_path="/modelserve/requests",
    generated_tokens="modelserve_completion_tokens", running="modelserve_running_requests",
    queued="modelserve_queue_depth", ttft="modelserve_time_to_first_token_seconds",
    kv_used="modelserve_kv_cache_tokens", kv_budget="modelserve_kv_cache_budget_tokens",
    prefix_hit_tokens="modelserve_prefix_cache_hit_tokens", prefix_query_tokens="modelserve_prompt_tokens",
    prefix_cached="modelserve_prefix_cache_tokens",
)  # fmt: skip


class FlaskOptions(BackendOptions):
    """The built-in server's own settings (YAML section ``flask-transformers:``)."""

    max_batch_size: int = Field(default=8, ge=1, le=256, description="rows decoding together (continuous batching)")
    kv_budget_tokens: int | None = Field(default=None, ge=1, description="KV cache the running rows may hold, "
                                         "in tokens; default: half the memory free after loading")  # fmt: skip
    max_queue: int = Field(default=256, ge=1, description="requests that may wait; past it: 503 with Retry-After")
    max_new_tokens_limit: int = Field(default=4096, ge=1, description="a larger max_new_tokens is a 400 error")
    prefix_cache: bool = Field(default=True, description="keep the KV of what was sent and generated, so a request "
                               "that starts the same way (an agent's next step) computes only the rest")  # fmt: skip
    tool_parser: Literal["generic", "hermes", "llama3_json", "mistral", "none"] | None = Field(
        default=None, description="how the model writes tool calls; default: from its chat template "
        "(configs/tool-families.yaml), generic when it has none; none: no tools"
    )  # fmt: skip
    max_batch_inputs: int = Field(default=32, ge=1, le=1024, description="embed/rerank: inputs (texts, or "
                                  "query-document pairs) encoded together in one forward pass")  # fmt: skip
    batch_wait_ms: float = Field(default=10.0, ge=0, le=1000, description="embed/rerank: while a forward pass holds "
                                 "fewer inputs than the last one (concurrent clients), how long it waits for more")  # fmt: skip


class FlaskTransformersBackend(Backend):
    name: ClassVar[str] = "flask-transformers"
    loader: ClassVar[str] = "transformers"
    requires: ClassVar[tuple[str, ...]] = ("transformers", "torch", "flask", "granian")
    summary: ClassVar[str] = "built-in Flask server, transformers loader: POST /llm/ + OpenAI /v1"
    # Anthropic Messages and OpenAI Responses are its own routes (through the shared translator, in-process).
    capabilities: ClassVar[Capabilities] = Capabilities(apis=("post", "openai"), streaming=True, tools=True,
                                                        structured_output=True, messages="native",
                                                        count_tokens="native", responses="native",
                                                        tasks=("generate", "embed", "rerank"))  # fmt: skip
    Options: ClassVar[type[BackendOptions]] = FlaskOptions
    install_hint: ClassVar[str] = "pip install torch==2.13.0 && pip install 'modelserve[hf]'  (CPU torch first)"
    # The default everywhere: it runs on any machine with torch, CPU or GPU.
    auto: ClassVar[AutoChoice | None] = AutoChoice(priority=10, devices=frozenset({"cpu", "cuda"}))

    def options(self, deployment: Deployment) -> FlaskOptions:
        return FlaskOptions.model_validate(deployment.options.get(self.name, {}))

    def container(self, *, version: str) -> Container:
        """The image built from this checkout (README: Scaling out), ``-cuda`` for GPUs; both loaders."""
        return Container(images={"cpu": f"modelserve:{version}", "cuda": f"modelserve:{version}-cuda"})

    def plan(
        self, *, deployment: Deployment, model: ResolvedModel, devices: DevicePlan, ctx: PlanContext
    ) -> LaunchPlan:
        dep = deployment
        opts = self.options(dep)
        served = dep.served_model_name or model.served_name
        placement = _placement(dep, devices, ctx.cpu_count)
        base = f"http://{dep.client_host}:{dep.port}"
        common = [
            ctx.python, "-m", "backends.builtin_server",
            "--model", model.engine_ref,
            "--served-model-name", served,
            "--host", dep.host,
            "--port", str(dep.port),
            "--device", placement.device,
            "--dtype", placement.dtype,
            "--threads", str(placement.threads),
        ]  # fmt: skip
        if dep.serves != "generate":
            return self._plan_pooling(dep, opts, model, devices, placement, common, served, base)
        parser, tools = tool_handling(opts.tool_parser, model.path)
        argv = [
            *common,
            "--max-batch-size", str(opts.max_batch_size),
            "--max-new-tokens-limit", str(opts.max_new_tokens_limit),
            "--max-queue", str(opts.max_queue),
            *(["--kv-budget-tokens", str(opts.kv_budget_tokens)] if opts.kv_budget_tokens else []),
            *([] if opts.prefix_cache else ["--no-prefix-cache"]),
            "--loader", self.loader,
            "--tool-parser", parser,
            *render_args(dep.backend_args),
        ]  # fmt: skip
        env, secret = _environment(dep, model, devices, placement.threads)
        probes = (
            OpenAIModelListed(base, dep.api_key, model=served),
            PostLlmAnswers(base, dep.api_key),
            OpenAIChatAnswers(base, dep.api_key, model=served),
        )
        return LaunchPlan(
            backend=self.name,
            api=self.capabilities.main_api,
            served_model_name=served,
            processes=(ProcessSpec("server", tuple(argv), env, probes, secret_env=secret),),
            endpoints={"post": f"{base}/llm/", "openai": f"{base}/v1"},
            clients=(
                ClientEndpoint("post_api_chat", f"{base}/llm/", served, dep.api_key),
                ClientEndpoint("openai_chat", f"{base}/v1", served, dep.api_key),
            ),
            notes=placement.notes,
            tools=tools,
            telemetry=TELEMETRY,
        )

    def _plan_pooling(self, dep: Deployment, opts: FlaskOptions, model: ResolvedModel, devices: DevicePlan,
                      placement: _Placement, common: list[str], served: str, base: str) -> LaunchPlan:  # fmt: skip
        """An embed or rerank deployment: the server's pooling engine instead of the generation
        scheduler (no /llm/, no chat routes), probed with the request its clients make."""
        argv = [*common, "--max-queue", str(opts.max_queue), "--loader", self.loader, "--task", dep.serves,
                "--max-batch-inputs", str(opts.max_batch_inputs), "--batch-wait-ms", f"{opts.batch_wait_ms:g}",
                *render_args(dep.backend_args)]  # fmt: skip
        env, secret = _environment(dep, model, devices, placement.threads)
        notes = list(placement.notes)
        probe: Probe
        if dep.serves == "embed":
            facts = embedding_facts(model.path)
            probe = EmbeddingAnswers(base, dep.api_key, model=served, dimensions=facts.dimensions)
            endpoints = {"openai": f"{base}/v1", "embeddings": f"{base}/v1/embeddings"}
            clients: tuple[ClientEndpoint, ...] = (ClientEndpoint("openai_embedding", f"{base}/v1", served, dep.api_key, facts.dimensions),
                       ClientEndpoint("post_api_embedding", f"{base}/v1/embeddings", served, dep.api_key,
                                      facts.dimensions))  # fmt: skip
            notes.append(embedding_note(facts.dimensions, facts.matryoshka))
        else:
            probe = RerankAnswers(base, dep.api_key, model=served)
            endpoints = {"openai": f"{base}/v1", "rerank": f"{base}/v1/rerank"}
            clients = (ClientEndpoint("rerank", f"{base}/v1/rerank", served, dep.api_key),)
            notes.append(RERANK_NOTE)
        return LaunchPlan(
            backend=self.name,
            api="openai",  # no /llm/: the OpenAI-style routes only
            served_model_name=served,
            processes=(ProcessSpec("server", tuple(argv), env,
                                   (OpenAIModelListed(base, dep.api_key, model=served), probe), secret_env=secret),),
            endpoints=endpoints,
            clients=clients,
            notes=tuple(notes),
        )  # fmt: skip


def embedding_note(dimensions: int | None, matryoshka: tuple[int, ...] | bool) -> str:
    """The summary's line about the vectors: their size and which ``dimensions`` requests may ask for."""
    if dimensions is None:
        return "embeddings: the model folder does not say their size"
    if matryoshka is True:
        return f"embeddings: {dimensions} dimensions; `dimensions` may ask for fewer (Matryoshka-trained)"
    if matryoshka:
        return f"embeddings: {dimensions} dimensions; `dimensions` may be {', '.join(map(str, matryoshka))} (Matryoshka)"
    return f"embeddings: {dimensions} dimensions (not Matryoshka-trained: `dimensions` must be {dimensions} or absent)"


def tool_handling(configured: str | None, model_dir: str | None) -> tuple[str, str]:
    """The server's --tool-parser, and the summary's line about tools."""
    if configured == "none":
        return "none", "off (tool_parser: none): requests with tools get a 400"
    if configured is not None:
        return configured, f"{configured} parser (tool_parser: {configured})"
    family = family_of(model_dir)
    if family is not None:
        return family.builtin, f"{family.builtin} parser ({family.about}; from the model's chat template)"
    return "generic", ("generic: tools described in the prompt and replies constrained to a call or an answer "
                       "(the model's chat template has no tool format)")  # fmt: skip


@dataclass(frozen=True)
class _Placement:
    device: str
    dtype: str
    threads: int
    notes: tuple[str, ...]


def _placement(dep: Deployment, devices: DevicePlan, cpu_count: int) -> _Placement:
    if devices.kind == "cpu":
        # This CPU class has no native bf16 math; float32 is faster at batch > 1.
        dtype = "float32" if dep.dtype == "auto" else dep.dtype
        # Every core: the engine batches concurrent requests into one decoding step, and that step
        # is fastest with all of them (bench/serve.py: raw batch-8 generate at 2 threads vs 1).
        threads = dep.threads or max(1, cpu_count)
        return _Placement("cpu", dtype, threads, (f"CPU, {dtype}, {threads} thread(s)",))
    notes = []
    if len(devices.gpus) > 1:
        notes.append("the built-in server uses one GPU; extra GPUs are ignored (use -b vllm for tensor parallel)")
    notes.append(f"{devices.describe()}, dtype {dep.dtype}")
    # cuda:0 is the first GPU in the child's CUDA_VISIBLE_DEVICES.
    return _Placement("cuda:0", dep.dtype, dep.threads or 1, tuple(notes))


def _environment(dep: Deployment, model: ResolvedModel, devices: DevicePlan,
                 threads: int) -> tuple[dict[str, str], frozenset[str]]:  # fmt: skip
    """The server's environment, and the names in it that hold secrets."""
    env: dict[str, str] = {"OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    if model.path is not None:
        # A local folder needs no hub; without these transformers may still phone home.
        env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    if devices.cuda_visible_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = devices.cuda_visible_devices
    secret: frozenset[str] = frozenset()
    if dep.api_key:
        env[API_KEY_ENV] = dep.api_key  # env, not argv: argv shows in `ps`
        secret = frozenset({API_KEY_ENV})
    env.update(dep.env)
    return env, secret
