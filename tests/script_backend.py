"""A backend that runs one of tests/programs as its server, registered the way a plugin is."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import ClassVar

from backends.base import Availability, Backend, EngineInfo, PlanContext
from backends.probes import HttpOk
from launcher.core.capabilities import Capabilities
from launcher.core.launch import LaunchPlan, ProcessSpec

PROGRAMS = Path(__file__).resolve().parent / "programs"


class ScriptBackend(Backend):
    """Serves ``backend_args.program`` (a file in tests/programs) with ``backend_args.args``."""

    name: ClassVar[str] = "script"
    summary: ClassVar[str] = "test programs"
    # Its programs answer /health, not chat: nothing for a translating front to translate.
    capabilities: ClassVar[Capabilities] = Capabilities(apis=("openai",), messages="no", count_tokens="no",
                                                        responses="no")  # fmt: skip

    def inspect(self, *, python: str, deployment: object, local: bool) -> EngineInfo:  # type: ignore[override]
        return EngineInfo(Availability(True, "test"))

    def plan(self, *, deployment, model, devices, ctx: PlanContext) -> LaunchPlan:  # type: ignore[override]
        args = dict(deployment.backend_args)
        program = PROGRAMS / args.pop("program", "http_server.py")
        extra = [str(a) for a in args.pop("args", [])]
        argv = (sys.executable, str(program), str(deployment.port), *extra)
        base = deployment.base_url
        probe = HttpOk(base, path="/health")
        return LaunchPlan(
            backend=self.name, api="openai", served_model_name=model.served_name,
            processes=(ProcessSpec("server", argv, {}, (probe,)),),
            endpoints={"health": f"{base}/health"},
        )


def register() -> None:
    """For a separate `modelserve` process (tests/run_cli.py). In-process tests use the
    `script_backend` fixture, which removes the entry again: a leftover would leak into others."""
    import backends

    backends.register("script", "tests.script_backend:ScriptBackend")
