"""Deterministic inputs for backend plan golden tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import backends
from backends.base import PlanContext
from launcher import devices
from launcher.cli.output import launch_plan_text
from launcher.core.deployment import Deployment
from launcher.core.launch import LaunchPlan
from launcher.models import ResolvedModel

LOCAL = ResolvedModel("/models/smollm2-135m", "local", "/models/smollm2-135m", "smollm2-135m", "local")
REMOTE = ResolvedModel("meta-llama/Llama-2-7b-chat-hf", "remote", None, "meta-llama/Llama-2-7b-chat-hf", "remote")


def gpu(i: int, free_gib: float = 70.0, total_gib: float = 80.0) -> devices.Gpu:
    return devices.Gpu(i, f"GPU-{i:08d}", "NVIDIA H100 80GB HBM3", int(total_gib * 1024),
                       int((total_gib - free_gib) * 1024), int(free_gib * 1024), 0)  # fmt: skip


def ports() -> Any:
    counter = iter(range(21001, 21100))
    return lambda: next(counter)


def render(backend: str, dep: Deployment, model: ResolvedModel = LOCAL, dplan: devices.DevicePlan | None = None,
           cpus: int = 2, engine: dict[str, Any] | None = None, memory: int = 16 * 1024**3,
           model_bytes: int = 0, checkpoint_dtype: str | None = None) -> tuple[LaunchPlan, str]:  # fmt: skip
    # The interpreter is the one the engine facts were inspected in, as the launcher passes it.
    python = str((engine or {}).get("python", "/venv/bin/python"))
    ctx = PlanContext(python, Path("/state/deployments/x/logs"), ports(), cpus, engine or {}, memory,
                      model_bytes, checkpoint_dtype=checkpoint_dtype)  # fmt: skip
    plan = backends.get(backend).plan(
        deployment=dep, model=model, devices=dplan or devices.DevicePlan("cpu", (), "test"), ctx=ctx
    )
    return plan, launch_plan_text(plan)
