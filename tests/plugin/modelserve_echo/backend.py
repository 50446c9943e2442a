"""The echo backend, written against modelserve's public backend contract only: options for its
own YAML section, readiness probes from modelserve's probe library, capabilities, a plan, and
the container a Kubernetes pod runs it from. It takes part in `up`, fleets and `k8s render`
exactly like a built-in backend; nothing in modelserve names it."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from pydantic import Field

from backends.base import Backend, BackendOptions, Container, PlanContext
from backends.probes import OpenAIChatAnswers, OpenAIModelListed
from launcher.core.capabilities import Capabilities
from launcher.core.deployment import Deployment
from launcher.core.launch import ClientEndpoint, LaunchPlan, ProcessSpec
from launcher.core.model_ref import ResolvedModel
from launcher.devices import DevicePlan


class EchoOptions(BackendOptions):
    """The YAML section ``echo:``."""

    prefix: str = Field(default="echo: ", description="put before every reply")


class EchoBackend(Backend):
    name: ClassVar[str] = "echo"
    summary: ClassVar[str] = "echoes the last user message (modelserve-echo, a plugin)"
    capabilities: ClassVar[Capabilities] = Capabilities(apis=("openai",))
    Options: ClassVar[type[BackendOptions]] = EchoOptions
    supports_gpu: ClassVar[bool] = False
    install_hint: ClassVar[str] = "pip install modelserve-echo"

    def container(self, *, version: str) -> Container:
        """An image with Python and this package (``pip install modelserve-echo``), tagged with
        the plugin's version; /health answers without the API key."""
        return Container(images={"cpu": "modelserve-echo:0.1.0"}, health="/health")

    def resolve_model(self, deployment: Deployment, *, prepare: bool,
                      progress: Callable[[str], None]) -> ResolvedModel:  # fmt: skip
        """Any name will do: the echo engine has no weights."""
        ref = deployment.model
        return ResolvedModel(ref, "remote", None, ref, f"{ref} (the echo engine needs no weights)")

    def plan(self, *, deployment: Deployment, model: ResolvedModel, devices: DevicePlan,
             ctx: PlanContext) -> LaunchPlan:  # fmt: skip
        dep = deployment
        opts = EchoOptions.model_validate(dep.options.get(self.name, {}))
        served = dep.served_model_name or model.served_name
        base = f"http://{dep.client_host}:{dep.port}"
        argv = (ctx.python, "-m", "modelserve_echo.server", "--host", dep.host, "--port", str(dep.port),
                "--served-model-name", served, "--prefix", opts.prefix)  # fmt: skip
        probes = (OpenAIModelListed(base, dep.api_key, model=served), OpenAIChatAnswers(base, dep.api_key, model=served))
        env = {"ECHO_API_KEY": dep.api_key} if dep.api_key else {}
        return LaunchPlan(
            backend=self.name,
            api="openai",
            served_model_name=served,
            processes=(ProcessSpec("server", argv, env, probes, secret_env=frozenset(env)),),
            endpoints={"openai": f"{base}/v1"},
            clients=(ClientEndpoint("openai_chat", f"{base}/v1", served, dep.api_key),),
            notes=(f"replies start with {opts.prefix!r}",),
        )
