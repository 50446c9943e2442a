"""Steps 1 and 2: record what discovery sees, then serve the model with `modelserve up` on the
device, ask it over both APIs, read its KV budget and prefix cache, and `down` it (psutil)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bench.device_check import models
from bench.device_check.harness import (
    MIB,
    Ctx,
    free_memory,
    free_port,
    gpu_memory,
    gpu_processes,
    http,
    metrics,
    survivors,
)
from bench.device_check.summary import StepFailed
from tests.tiny_model import VOCABULARY

NAME = "dc-serve"
GIB = 1024**3
# A system prompt of ~130 tokens (eight 16-token blocks of the prefix cache), in the model's vocabulary.
SYSTEM = " ".join(VOCABULARY.split() * 2)


def record_step(ctx: Ctx) -> None:
    with ctx.summary.step("record", "discovery as fixtures: nvidia-smi -q -x, NVML, modelserve devices", ctx.out) as step:
        res = ctx.modelserve("devices", "--json", timeout=60)
        step.check("modelserve devices --json answers", res.code == 0, None if res.code == 0 else res.why(),
                   required=True)  # fmt: skip
        listed = res.json()["gpus"]
        step.data["gpus"] = listed
        if not ctx.cuda:
            step.check("no GPU listed (the CPU run sets CUDA_VISIBLE_DEVICES=-1)", listed == [], listed)
            step.skip_here("CUDA only: nvidia-smi -q -x, NVML readings and the fixtures made of them")
            return
        from launcher import devices
        from tests.fixtures.gpu import record

        step.check("modelserve devices lists a GPU", bool(listed), len(listed), required=True)
        name = record.fixture_name(listed[0]["name"])
        written = record.record(ctx.out, name)
        (ctx.out / f"devices-{name}.json").write_text(res.stdout)
        step.data["fixtures"] = [p.name for p in written] + [f"devices-{name}.json"]
        smi = devices.parse_nvidia_smi_csv((ctx.out / f"smi-{name}.csv").read_text())
        step.check("nvidia-smi and modelserve devices (NVML) list the same GPUs", [g.uuid for g in smi] ==
                   [g["uuid"] for g in listed], [g.uuid for g in smi])  # fmt: skip
        import torch

        step.check("torch sees as many CUDA devices", torch.cuda.device_count() == len(listed), torch.cuda.device_count())
        step.data["nvml_memory"] = gpu_memory()


def model_step(ctx: Ctx) -> None:
    with ctx.summary.step("model", "a random-weight Llama built here from a config, with a real tokenizer", ctx.out) as step:
        folder = models.build_served(ctx)
        step.data.update(ctx.summary.host["model"])
        size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
        step.check("saved with save_pretrained (safetensors)", size > 0, f"{size / MIB:.1f} MiB")


def serve_step(ctx: Ctx) -> dict[str, Any] | None:
    """`up` on the device and the answers; the deployment's record while it serves (for bench, down)."""
    record: dict[str, Any] | None = None
    with ctx.summary.step("serve", f"modelserve up --device {ctx.device}: readiness, OpenAI and /llm/ answers, "
                          "KV budget, prefix cache", ctx.out) as step:  # fmt: skip
        served = ctx.models.get("served")
        if served is None:
            raise StepFailed("no model: the model step failed")
        before = gpu_memory() if ctx.cuda else {"free": free_memory(ctx)}
        step.data["memory_before"] = before
        wait = ctx.budget.timeout(240)  # up's own deadline inside it: up, not a kill, ends a slow start
        res = ctx.modelserve("up", "-m", str(served), "-b", "flask-transformers", "--device", ctx.device, "--name", NAME,
                             "-p", str(free_port()), "--timeout", str(max(5, int(wait) - 10)), "--agentscope-config",
                             str(ctx.work / "model_config.json"), "--json", timeout=wait)  # fmt: skip
        ok = res.code == 0
        step.check("modelserve up is ready (its probes: /v1/models, a 1-token chat, POST /llm/)", ok,
                   res.json()["ready_seconds"] if ok else res.why(), required=True)  # fmt: skip
        record = res.json()["deployment"]
        step.data["ready_seconds"] = res.json()["ready_seconds"]
        _answers(ctx, step, record["base_url"], record["served_model_name"])
        _where(ctx, step, record, before)
        _kv_budget(ctx, step, record["base_url"], before["free"])
        _prefix_cache(ctx, step, record["base_url"], record["served_model_name"])
    return record


def _answers(ctx: Ctx, step: Any, base: str, served: str) -> None:
    body = {"model": served, "messages": [{"role": "user", "content": "what is the capital of france ?"}],
            "max_tokens": 8, "temperature": 0}  # fmt: skip
    status, reply = http("POST", base + "/v1/chat/completions", body)
    content = _dig(reply, "choices", 0, "message", "content")
    step.check("OpenAI chat completion answers", status == 200 and isinstance(content, str),
               content if isinstance(content, str) else f"HTTP {status}: {str(reply)[:300]}")  # fmt: skip
    status, reply = http("POST", base + "/llm/", {"messages": [{"role": "user", "content": "hello"}], "max_new_tokens": 8})
    envelope = _dig(reply, "data", "response", "choices", 0, "message", "content")
    step.check("POST /llm/ answers with AgentScope's envelope", status == 200 and isinstance(envelope, str),
               envelope if isinstance(envelope, str) else f"HTTP {status}: {str(reply)[:300]}")  # fmt: skip


def _dig(value: Any, *path: str | int) -> Any:
    """value[p0][p1]..., or None where the shape differs."""
    for key in path:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _where(ctx: Ctx, step: Any, record: dict[str, Any], before: dict[str, int]) -> None:
    """The server's own log says where and at what dtype it loaded; on CUDA NVML shows the memory."""
    log = Path(record["processes"][0]["log"]).read_text(errors="replace")
    ctx.logs.append(f"--- server log ({NAME}) ---\n{log[-8000:]}")
    loaded = re.search(r"dtype=(\S+) device=(\S+)", log)
    want = ("bfloat16", "cuda:0") if ctx.cuda else ("float32", "cpu")
    step.check(f"the server loaded the model at {want[0]} on {want[1]} (its log)",
               loaded is not None and loaded.groups() == want, loaded.group(0) if loaded else None)  # fmt: skip
    if not ctx.cuda:
        step.skip_here("CUDA only: the server's weights in GPU memory (NVML)")
        return
    after = gpu_memory()
    weights = int(ctx.summary.host["model"]["parameters"]) * models.SERVING_BYTES["cuda"]
    grew = after["used"] - before["used"]
    step.check("GPU memory in use grew by at least the weights", grew >= weights,
               f"{grew / MIB:.0f} MiB (weights {weights / MIB:.0f} MiB)")  # fmt: skip
    procs = gpu_processes()
    step.data["nvml_processes"] = {str(k): v for k, v in procs.items()}
    pid = record["processes"][0]["pid"]
    if procs:
        step.check("NVML lists the server's pid as a compute process", pid in procs, sorted(procs))
    else:
        step.data["nvml_processes_note"] = "NVML listed no compute process (this runtime hides them)"


def _kv_budget(ctx: Ctx, step: Any, base: str, free_before: int) -> None:
    """The server's default KV budget is half the memory free after loading (engine/memory.py)."""
    m = metrics(base)
    budget = m.get("modelserve_kv_cache_budget_tokens")
    per_token = models.kv_bytes_per_token(models.config(ctx.models["served"]), models.SERVING_BYTES[ctx.device])
    expected = free_before / 2 / per_token
    # CUDA: the server's own context, weights and warm-up come off what was free (~1-2 GiB of
    # ~80); the CPU's available memory moves with everything else this shared host runs.
    low, high = ((free_before - 3 * GIB) / 2 / per_token, expected * 1.02) if ctx.cuda else (expected / 2, expected * 2)
    step.data["kv_budget_tokens"] = budget
    step.check("KV budget (/metrics) is half the free memory, in tokens of this model's KV",
               budget is not None and low <= budget <= high,
               f"{budget} tokens; expected {low:.0f}..{high:.0f} from {free_before / GIB:.1f} GiB free")  # fmt: skip


def _prefix_cache(ctx: Ctx, step: Any, base: str, served: str) -> None:
    def ask(text: str) -> int:
        body = {"model": served, "max_tokens": 4, "temperature": 0,
                "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]}  # fmt: skip
        return http("POST", base + "/v1/chat/completions", body)[0]

    hits = "modelserve_prefix_cache_hits_total"
    first = metrics(base).get(hits, 0.0)
    statuses = [ask("one two three"), ask("four five six")]
    got = metrics(base).get(hits, 0.0) - first
    step.check("the served model's prefix cache serves a shared system prompt (/metrics hits)",
               statuses == [200, 200] and got >= 1, f"{got:.0f} hit(s); HTTP {statuses}")  # fmt: skip


def down_step(ctx: Ctx, record: dict[str, Any] | None) -> None:
    with ctx.summary.step("down", "modelserve down leaves nothing (psutil), memory given back", ctx.out) as step:
        if record is None:
            raise StepFailed("nothing to stop: the serve step started no deployment")
        res = ctx.modelserve("down", NAME, timeout=60)
        step.check("modelserve down succeeds", res.code == 0, None if res.code == 0 else res.why())
        left = survivors(record)
        step.check("no process of the deployment is left (pids, process groups, marker)", not left, left or None)
        status = ctx.modelserve("status", "--json", timeout=60)
        names = [d.get("name") for d in status.json().get("deployments", [])] if status.code == 0 else None
        step.check("status lists no deployment", names == [], names)
        if not ctx.cuda:
            step.skip_here("CUDA only: GPU memory given back (NVML)")
            return
        before, after = step_memory(ctx), gpu_memory()
        step.check("GPU memory in use is back to what it was before up (within 256 MiB)",
                   after["used"] - before <= 256 * MIB, f"{(after['used'] - before) / MIB:+.0f} MiB")  # fmt: skip
        step.check("NVML lists no process of the deployment", record["processes"][0]["pid"] not in gpu_processes())


def step_memory(ctx: Ctx) -> int:
    serve = next(s for s in ctx.summary.steps if s.name == "serve")
    return int(serve.data["memory_before"]["used"])
