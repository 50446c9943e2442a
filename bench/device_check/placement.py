"""Step 2, second half: the fit check against the memory free now, with a model sized to fit and
one sized not to, and device choice: `--gpus`, `CUDA_VISIBLE_DEVICES` (a UUID, -1), `--device cuda`
where there is none. Dry runs where the plan is the answer; real `up`s where a refusal is."""

from __future__ import annotations

from typing import Any

import psutil

from bench.device_check import models
from bench.device_check.harness import Ctx, Result, free_memory, free_port
from bench.device_check.summary import StepFailed

FITS, TOO_BIG = 0.8, 1.25  # the estimate as a share of the free memory
DEVICE_ERROR = 12  # the launcher's exit code for a device problem (will not fit, no such GPU)


def placement_step(ctx: Ctx) -> None:
    with ctx.summary.step("placement", "will it fit (against the free memory read now), --gpus, CUDA_VISIBLE_DEVICES",
                          ctx.out) as step:  # fmt: skip
        if "served" not in ctx.models:
            raise StepFailed("no model: the model step failed")
        free = free_memory(ctx)
        fits, fits_size = models.sized(ctx, "fits", FITS, free)
        too_big, too_big_size = models.sized(ctx, "too-big", TOO_BIG, free)
        step.data["sized"] = {"fits": fits_size, "too_big": too_big_size}
        plan = _dry_run(ctx, "-m", str(fits), "--device", ctx.device)
        verdict = (plan or {}).get("fit") or {}
        step.check(f"a model whose estimate is {FITS:.0%} of the free memory fits (up --dry-run)",
                   verdict.get("fits") is True, verdict.get("message"))  # fmt: skip
        res = _up(ctx, "-m", str(too_big), "--device", ctx.device, "--name", "dc-too-big")
        step.check(f"a model whose estimate is {TOO_BIG:.0%} of it is refused before anything starts (exit 12)",
                   res.code == DEVICE_ERROR and "needs ~" in res.stderr, res.why())  # fmt: skip
        step.check("and nothing of it runs", not _running(ctx, str(too_big)))
        if ctx.cuda:
            _gpus(ctx, step)
        else:
            res = _up(ctx, "-m", str(ctx.models["served"]), "--device", "cuda", "--name", "dc-no-gpu")
            step.check("--device cuda where no GPU is: exit 12 naming the fix", res.code == DEVICE_ERROR and
                       "--device cpu" in res.stderr, res.why())  # fmt: skip
            step.skip_here("CUDA only: --gpus N against the machine's GPUs, CUDA_VISIBLE_DEVICES by UUID and -1")


def _gpus(ctx: Ctx, step: Any) -> None:
    gpus = next(s for s in ctx.summary.steps if s.name == "record").data["gpus"]
    served = str(ctx.models["served"])
    freest = max(gpus, key=lambda g: (g["memory_free_mib"], -g["index"]))
    plan = _dry_run(ctx, "-m", served, "--device", "cuda", "--gpus", "1")
    step.check("--gpus 1 takes the GPU with the most free memory (the child's CUDA_VISIBLE_DEVICES)",
               _visible(plan) == str(freest["index"]), _visible(plan))  # fmt: skip
    res = _up(ctx, "-m", served, "--device", "cuda", "--gpus", str(len(gpus) + 1), "--name", "dc-gpus")
    step.check(f"--gpus {len(gpus) + 1} on {len(gpus)} GPU(s): exit 12", res.code == DEVICE_ERROR and
               f"only {len(gpus)} GPU" in res.stderr, res.why())  # fmt: skip
    last = gpus[-1]
    env = ctx.env(CUDA_VISIBLE_DEVICES=last["uuid"])
    listed = ctx.modelserve("devices", "--json", env=env, timeout=60)
    seen = [g["uuid"] for g in listed.json()["gpus"]] if listed.code == 0 else listed.why()
    step.check("CUDA_VISIBLE_DEVICES=<uuid>: devices lists that GPU alone, as cuda:0", seen == [last["uuid"]], seen)
    plan = _dry_run(ctx, "-m", served, "--device", "cuda:0", env=env)
    step.check("and cuda:0 is planned as its physical index", _visible(plan) == str(last["index"]), _visible(plan))
    res = _up(ctx, "-m", served, "--device", "cuda", "--name", "dc-hidden", env=ctx.env(CUDA_VISIBLE_DEVICES="-1"))
    step.check("CUDA_VISIBLE_DEVICES=-1 hides every GPU: --device cuda is exit 12", res.code == DEVICE_ERROR and
               "none is visible" in res.stderr, res.why())  # fmt: skip


def _dry_run(ctx: Ctx, *args: str, env: dict[str, str] | None = None) -> dict[str, Any] | None:
    res = ctx.modelserve("up", "--dry-run", "--json", "-b", "flask-transformers", "-p", str(free_port()), *args,
                         env=env, timeout=120)  # fmt: skip
    return res.json() if res.code == 0 else None


def _up(ctx: Ctx, *args: str, env: dict[str, str] | None = None) -> Result:
    return ctx.modelserve("up", "-b", "flask-transformers", "-p", str(free_port()), "--timeout", "120", *args,
                          env=env, timeout=180)  # fmt: skip


def _visible(plan: dict[str, Any] | None) -> str | None:
    if plan is None:
        return None
    return str(plan["processes"][0]["env"].get("CUDA_VISIBLE_DEVICES"))


def _running(ctx: Ctx, model: str) -> list[str]:
    status = ctx.modelserve("status", "--json", timeout=60)
    listed = [d.get("name") for d in status.json().get("deployments", [])] if status.code == 0 else ["?"]
    procs = [p.pid for p in psutil.process_iter(["cmdline"]) if model in " ".join(p.info["cmdline"] or [])]
    return [*(f"deployment {n}" for n in listed), *(f"pid {p}" for p in procs)]
