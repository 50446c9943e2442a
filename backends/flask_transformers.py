"""Flask + Transformers: modelserve's built-in server (backends/flask_server) with the
transformers loader. Serves AgentScope's ``POST /llm/`` and the OpenAI ``/v1`` routes."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from backends.base import (
    ApiKind,
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

API_KEY_ENV = "MODELSERVE_API_KEY"


class FlaskTransformersBackend(Backend):
    name: ClassVar[str] = "flask-transformers"
    api: ClassVar[ApiKind] = "post"
    loader: ClassVar[str] = "transformers"
    requires: ClassVar[tuple[str, ...]] = ("transformers", "torch", "flask")
    summary: ClassVar[str] = "built-in Flask server, transformers loader: POST /llm/ + OpenAI /v1"

    def plan(
        self, *, deployment: Deployment, model: ResolvedModel, devices: DevicePlan, ctx: PlanContext
    ) -> LaunchPlan:
        dep = deployment
        served = dep.served_model_name or model.served_name
        notes: list[str] = []
        dtype: str
        if devices.kind == "cpu":
            device = "cpu"
            # This CPU class has no native bf16 math; float32 is faster at batch > 1.
            dtype = "float32" if dep.dtype == "auto" else dep.dtype
            # Half the cores: two engine processes on two cores each run ~3x slower than with one.
            threads = dep.threads or max(1, ctx.cpu_count // 2)
            notes.append(f"CPU, {dtype}, {threads} thread(s)")
        else:
            if len(devices.gpus) > 1:
                notes.append("the built-in server uses one GPU; extra GPUs are ignored (use -b vllm for tensor parallel)")
            device = "cuda:0"  # the first GPU in the child's CUDA_VISIBLE_DEVICES
            dtype = "auto" if dep.dtype == "auto" else dep.dtype
            threads = dep.threads or 1
            notes.append(f"{devices.describe()}, dtype {dtype}")

        argv = [
            ctx.python, "-m", "backends.flask_server",
            "--model", model.engine_ref,
            "--served-model-name", served,
            "--host", dep.host,
            "--port", str(dep.port),
            "--device", device,
            "--dtype", dtype,
            "--threads", str(threads),
            "--max-batch-size", str(dep.max_batch_size),
            "--max-new-tokens-limit", str(dep.max_new_tokens_limit),
            "--loader", self.loader,
            *render_args(dep.backend_args),
        ]  # fmt: skip
        env: dict[str, str] = {
            "OMP_NUM_THREADS": str(threads),
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
        }
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

        base = f"http://{dep.client_host}:{dep.port}"
        probes = (
            ReadinessProbe("openai-models", base, served, dep.api_key),
            ReadinessProbe("post-llm", base, served, dep.api_key),
            ReadinessProbe("openai-chat", base, served, dep.api_key),
        )
        return LaunchPlan(
            backend=self.name,
            api=self.api,
            served_model_name=served,
            processes=(ProcessSpec("server", tuple(argv), env, probes, secret_env=secret),),
            endpoints={"post": f"{base}/llm/", "openai": f"{base}/v1"},
            clients=(
                ClientEndpoint("post_api_chat", f"{base}/llm/", served, dep.api_key),
                ClientEndpoint("openai_chat", f"{base}/v1", served, dep.api_key),
            ),
            notes=tuple(notes),
        )
