"""The translating front as part of a deployment: which agent API surfaces it serves how, and the
plan with a front added where the engine lacks one (launcher.front is the program).

Generic: what a backend needs comes from its capabilities (native / translated / no per surface,
``tools``), never from its name. With a surface to translate, the engine is planned on a
loopback port and the front takes the deployment's own port, so clients keep one base URL; the
front is one more process of the deployment, started after the engine answers, probed, stopped
and supervised with it. A server reused from outside (nothing of ours may take its port) gets no
front: its translated surfaces become "no", and a note says so.
"""

from __future__ import annotations

import sys
from dataclasses import replace

from backends.base import Backend, PlanContext
from backends.probes import AnthropicMessagesAnswers, HttpOk, OpenAIResponsesAnswers
from launcher.core.capabilities import Support, Surface
from launcher.core.deployment import Deployment
from launcher.core.launch import LaunchPlan, ProcessSpec
from launcher.core.model_ref import ResolvedModel
from launcher.core.probe import Probe
from launcher.devices import DevicePlan
from launcher.store.records import FRONT_ROLE

API_KEY_ENV = "MODELSERVE_API_KEY"  # launcher.front reads the key from here (never argv)


def surfaces_for(backend: Backend, *, running: str | None) -> dict[Surface, Support]:
    declared = backend.capabilities.surfaces()
    if running is None:
        return declared
    return {name: "no" if how == "translated" else how for name, how in declared.items()}


def plan(backend: Backend, *, deployment: Deployment, model: ResolvedModel, devices: DevicePlan,
         ctx: PlanContext) -> LaunchPlan:  # fmt: skip
    """``backend.plan()``, with the front in front of it when a surface needs translating."""
    if deployment.serves != "generate":  # an embedding or rerank model: no chat for Messages or Responses
        launch = backend.plan(deployment=deployment, model=model, devices=devices, ctx=ctx)
        return replace(launch, surfaces=dict.fromkeys(backend.capabilities.surfaces(), "no"))
    surfaces = surfaces_for(backend, running=ctx.running)
    translate = [name for name, how in surfaces.items() if how == "translated"]
    if not translate:
        launch = backend.plan(deployment=deployment, model=model, devices=devices, ctx=ctx)
        lost = [name for name, how in backend.capabilities.surfaces().items() if how == "translated"]
        notes = launch.notes
        if ctx.running is not None and lost:
            notes = (*notes, f"{', '.join(lost)}: not served by a reused server (modelserve's translating front "
                             "cannot take its port); let modelserve start the engine to have them")  # fmt: skip
        return replace(launch, surfaces=surfaces, notes=notes)
    inner = deployment.model_copy(update={"host": "127.0.0.1", "port": ctx.free_port()})
    launch = backend.plan(deployment=inner, model=model, devices=devices, ctx=ctx)
    caps = backend.capabilities
    flags = [flag for flag, able in (("--no-tools", caps.tools), ("--no-structured-output", caps.structured_output))
             if not able]  # fmt: skip
    return with_front(launch, public=deployment, inner=inner, translate=translate, surfaces=surfaces, flags=flags)


def with_front(launch: LaunchPlan, *, public: Deployment, inner: Deployment, translate: list[Surface],
               surfaces: dict[Surface, Support], flags: list[str]) -> LaunchPlan:  # fmt: skip
    """``launch`` (planned on ``inner``'s loopback port) behind a front on ``public``'s port; its
    endpoints and client entries at the public URL. ``flags``: what the engine cannot do."""
    inner_base = f"http://{inner.client_host}:{inner.port}"
    public_base = f"http://{public.client_host}:{public.port}"

    def outside(url: str) -> str:
        return public_base + url[len(inner_base) :] if url.startswith(inner_base) else url

    argv = [sys.executable, "-m", "launcher.front", "--host", public.host, "--port", str(public.port),
            "--upstream", inner_base, "--translate", ",".join(translate), *flags]  # fmt: skip
    env, secret = {"PYTHONUNBUFFERED": "1"}, frozenset[str]()
    if public.api_key:
        env[API_KEY_ENV], secret = public.api_key, frozenset({API_KEY_ENV})
    # Ready when the front passes a request through; the surfaces answer once the model is there
    # (an engine may fetch it after its processes start), so their probes come last.
    front = ProcessSpec(FRONT_ROLE, tuple(argv), env, (HttpOk(public_base, public.api_key, path="/v1/models"),),
                        secret_env=secret)  # fmt: skip
    checks: list[Probe] = []
    if surfaces["messages"] != "no":
        checks.append(AnthropicMessagesAnswers(public_base, public.api_key, model=launch.served_model_name))
    if surfaces["responses"] != "no":
        checks.append(OpenAIResponsesAnswers(public_base, public.api_key, model=launch.served_model_name))
    note = (f"front: {', '.join(translate)} translated to the engine's Chat Completions by modelserve's front on "
            f"{public_base}; everything else passes through to the engine on {inner_base}")  # fmt: skip
    return replace(
        launch,
        processes=(*launch.processes, front),
        endpoints={name: outside(url) for name, url in launch.endpoints.items()},
        clients=tuple(replace(c, url=outside(c.url)) for c in launch.clients),
        final_probes=(*launch.final_probes, *checks),
        notes=(*launch.notes, note),
        engine={**launch.engine, "front": f"python -m launcher.front ({', '.join(translate)})"},
        surfaces=surfaces,
    )
