"""FastChat: controller -> model worker -> OpenAI API server, as one deployment.

The three start in that order and each is gated before the next starts: the controller answers;
the worker has registered the served name with it; the API server lists the name and a 1-token
chat completion succeeds. FastChat's own launch script sleeps and greps logs instead, and a
worker that never registers leaves clients with "No available workers" (facts from
shared/reference/hf-fastchat.md §5 and fschat 0.2.36's source):

- The worker serves the last path component unless ``--model-names`` is given, so an AgentScope
  config written with the full ID never matches: the worker always gets the served name.
- For a path no adapter knows, FastChat falls back to the ``one_shot`` template (a 475-token
  canned conversation around a one-line question). The template is matched to the model's own
  chat template here; YAML ``conv_template:`` overrides.
- ``LOGDIR`` decides where FastChat writes its own log files (else the working directory).
- The API server takes keys only as ``--api-keys`` on argv; a two-line bootstrap appends the key
  from the environment instead, so it does not show in ``ps``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import Field

from backends.base import Backend, BackendOptions, EnvSpec, NoContainer, PlanContext, render_args
from backends.probes import ControllerAnswers, OpenAIChatAnswers, OpenAIModelListed, WorkerRegistered
from launcher.core.capabilities import Capabilities
from launcher.core.deployment import Deployment
from launcher.core.launch import ClientEndpoint, LaunchPlan, ProcessSpec
from launcher.core.model_ref import ResolvedModel
from launcher.devices import DevicePlan
from launcher.models.families import chat_template

API_KEY_ENV = "MODELSERVE_API_KEY"
NO_TOOLS = ("not supported: FastChat's OpenAI API server has no tool calling (it ignores `tools`), so agents "
            "that act (AgentScope's ReActAgent) need another backend: -b flask-transformers or -b vllm")
# Read in fschat 0.2.36 (serve/model_worker.py get_embeddings, model/model_adapter.py): what its
# /v1/embeddings would give for a sentence-transformers model such as all-MiniLM-L6-v2.
NO_EMBEDDINGS = ("FastChat's worker cannot serve a sentence-transformers model: only a path containing 'bge' or "
                 "'e5-' gets an encoder (BGE: CLS pooling, whatever the model's own pooling); any other loads as a "
                 "causal LM (BERT -> BertLMHeadModel), whose vocabulary logits it would return as the 'embedding'; "
                 "and it runs BERT without the attention mask, so padded batches change the vectors")
# `python -c BOOT MODULE ARGS...`: run MODULE as __main__ with the key appended from the env.
WITH_KEY_BOOT = (
    "import os, runpy, sys; "
    "sys.argv = sys.argv[1:] + ['--api-keys', os.environ['" + API_KEY_ENV + "']]; "
    "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)"
)

# Marker in the model's chat template -> the fschat 0.2.36 template that produces the same format.
TEMPLATE_RULES: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("<|im_start|>",), "qwen-7b-chat", "ChatML"),
    (("[INST]", "<<SYS>>"), "llama-2", "Llama-2 [INST] <<SYS>>"),
    (("[INST]",), "mistral", "Mistral [INST]"),
    (("<|user|>", "<|assistant|>"), "zephyr", "Zephyr <|user|>"),
    (("USER:", "ASSISTANT:"), "vicuna_v1.1", "Vicuna USER:/ASSISTANT:"),
)


def choose_conv_template(model_dir: str | None, override: str | None) -> tuple[str | None, str]:
    """(template or None to let FastChat pick by path, why) for the summary."""
    if override:
        return override, f"conversation template {override} (from conv_template)"
    text = chat_template(model_dir)
    if text is None:
        return None, "no chat template in the model folder: FastChat picks one by path (may be one_shot)"
    for markers, name, fmt in TEMPLATE_RULES:
        if all(m in text for m in markers):
            return name, f"conversation template {name}: the model's own chat format is {fmt}"
    return None, "the model's chat format matches no FastChat 0.2.36 template: FastChat picks one by path"


class FastChatOptions(BackendOptions):
    """FastChat's own settings (YAML section ``fastchat:``)."""

    conv_template: str | None = Field(default=None, description="conversation template; default: matched to the "
                                      "model's own chat template")  # fmt: skip
    worker: Literal["model", "vllm"] = Field(
        default="model", description="model: fastchat.serve.model_worker | vllm: fastchat.serve.vllm_worker"
    )


class FastChatBackend(Backend):
    name: ClassVar[str] = "fastchat"
    requires: ClassVar[tuple[str, ...]] = ("fschat",)
    summary: ClassVar[str] = "FastChat controller + model worker + OpenAI API server"
    # Its OpenAI API server has no tool calling and no response_format (fschat 0.2.36), and no
    # Messages or Responses: modelserve's front translates those (without tools: see surfaces.chat).
    capabilities: ClassVar[Capabilities] = Capabilities(apis=("openai",), streaming=True, messages="translated",
                                                        count_tokens="translated", responses="translated",
                                                        refusals=(("embed", NO_EMBEDDINGS),
                                                                  ("rerank", "FastChat has no rerank route")))  # fmt: skip
    Options: ClassVar[type[BackendOptions]] = FastChatOptions
    install_hint: ClassVar[str] = "modelserve env create fastchat"
    env_spec: ClassVar[EnvSpec | None] = EnvSpec(
        name="fastchat", requirements={"cpu": "fastchat.txt", "cuda": "fastchat.txt"}, engine=("fschat",)
    )

    def options(self, deployment: Deployment) -> FastChatOptions:
        return FastChatOptions.model_validate(deployment.options.get(self.name, {}))

    def container(self, *, version: str) -> NoContainer:
        return NoContainer("FastChat runs three processes that start one after another, each gated on the one before")

    def plan(
        self, *, deployment: Deployment, model: ResolvedModel, devices: DevicePlan, ctx: PlanContext
    ) -> LaunchPlan:
        dep = deployment
        served = dep.served_model_name or model.served_name
        py = ctx.python
        controller_port = ctx.free_port()
        controller = f"http://127.0.0.1:{controller_port}"
        base = f"http://{dep.client_host}:{dep.port}"
        common = {"LOGDIR": str(ctx.log_dir), "PYTHONUNBUFFERED": "1"}
        if model.path is not None:
            common.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
        common.update(dep.env)
        worker = self._worker(dep, model, devices, ctx, served, controller, common)
        processes = (
            ProcessSpec(
                "controller",
                (py, "-m", "fastchat.serve.controller", "--host", "127.0.0.1", "--port", str(controller_port)),
                common,
                (ControllerAnswers(controller),),
            ),
            worker.spec,
            _api_server(dep, py, controller, served, common),
        )
        return LaunchPlan(
            backend=self.name,
            api=self.capabilities.main_api,
            served_model_name=served,
            processes=processes,
            endpoints={"openai": f"{base}/v1", "controller": controller},
            clients=(ClientEndpoint("openai_chat", f"{base}/v1", served, dep.api_key),),
            notes=worker.notes,
            engine={"worker": worker.module, "conv_template": worker.template or "(FastChat's choice)"},
            tools=NO_TOOLS,
        )

    def _worker(self, dep: Deployment, model: ResolvedModel, devices: DevicePlan, ctx: PlanContext, served: str,
                controller: str, common: dict[str, str]) -> _Worker:  # fmt: skip
        opts = self.options(dep)
        worker_url = f"http://127.0.0.1:{ctx.free_port()}"
        template, template_note = choose_conv_template(model.path, opts.conv_template)
        notes = [template_note, f"controller {controller}, worker {worker_url}"]
        args: dict[str, object] = {
            "host": "127.0.0.1",
            "port": int(worker_url.rsplit(":", 1)[1]),
            "worker_address": worker_url,
            "controller_address": controller,
            "model_path": model.engine_ref,
            "model_names": served,
            "conv_template": template,
        }
        env = dict(common)
        if opts.worker == "vllm":
            module = "fastchat.serve.vllm_worker"
            if devices.tensor_parallel > 1:
                args["num_gpus"] = devices.tensor_parallel
        else:
            module = "fastchat.serve.model_worker"
            args["device"] = "cpu" if devices.kind == "cpu" else "cuda"
            if devices.kind == "cuda":
                args["num_gpus"] = devices.tensor_parallel
            if dep.dtype != "auto":
                args["dtype"] = dep.dtype
        if devices.kind == "cpu":
            threads = dep.threads or max(1, ctx.cpu_count // 2)
            env["OMP_NUM_THREADS"] = str(threads)
            notes.append(f"CPU, {threads} thread(s) (FastChat loads float32 on CPU)")
        else:
            env["CUDA_VISIBLE_DEVICES"] = devices.cuda_visible_devices or ""
            notes.append(f"{devices.describe()}")
        argv = (ctx.python, "-m", module, *render_args(args), *render_args(dep.backend_args))
        spec = ProcessSpec("worker", argv, env, (WorkerRegistered(controller, model=served),))
        return _Worker(spec, module, template, tuple(notes))


@dataclass(frozen=True)
class _Worker:
    spec: ProcessSpec
    module: str
    template: str | None
    notes: tuple[str, ...]


def _api_server(dep: Deployment, py: str, controller: str, served: str, common: dict[str, str]) -> ProcessSpec:
    base = f"http://{dep.client_host}:{dep.port}"
    api_args = [*render_args({"host": dep.host, "port": dep.port, "controller_address": controller})]
    env = dict(common)
    secret: frozenset[str] = frozenset()
    if dep.api_key:
        argv = [py, "-c", WITH_KEY_BOOT, "fastchat.serve.openai_api_server", *api_args]
        env[API_KEY_ENV] = dep.api_key
        secret = frozenset({API_KEY_ENV})
    else:
        argv = [py, "-m", "fastchat.serve.openai_api_server", *api_args]
    probes = (OpenAIModelListed(base, dep.api_key, model=served), OpenAIChatAnswers(base, dep.api_key, model=served))
    return ProcessSpec("api", tuple(argv), env, probes, secret_env=secret)
