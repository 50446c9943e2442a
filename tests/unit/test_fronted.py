"""The translating front as part of a plan (launcher/lifecycle/fronted.py): where the backend's
capabilities say a surface is translated, the engine moves to a loopback port and the front takes
the deployment's; where it is native, nothing changes; a reused server gets no front."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import backends
from backends.base import PlanContext
from launcher import devices
from launcher.cli.output import launch_plan_text
from launcher.core.deployment import Deployment
from launcher.core.launch import LaunchPlan
from launcher.lifecycle import fronted
from launcher.models import ResolvedModel
from tests.golden import assert_golden
from tests.unit.plans import LOCAL, ports

CPU = devices.DevicePlan("cpu", (), "no GPU found")
TAG = ResolvedModel("qwen2.5:0.5b", "remote", None, "qwen2.5:0.5b", "Ollama tag qwen2.5:0.5b")


def render(backend: str, dep: Deployment, model: ResolvedModel = LOCAL, engine: dict[str, Any] | None = None,
           running: str | None = None) -> tuple[LaunchPlan, str]:  # fmt: skip
    ctx = PlanContext("/venv/bin/python", Path("/state/deployments/x/logs"), ports(), 2, engine or {}, running=running)
    plan = fronted.plan(backends.get(backend), deployment=dep, model=model, devices=CPU, ctx=ctx)
    return plan, launch_plan_text(plan).replace(sys.executable, "/modelserve/venv/bin/python")


def test_fastchat_gets_a_front_on_its_port_and_the_engine_moves_behind_it() -> None:
    dep = Deployment(model="x", served_model_name="smol", host="0.0.0.0", port=8001, api_key="s3cret")
    plan, text = render("fastchat", dep)
    assert_golden("plans/fronted/fastchat-key.txt", text)
    assert [p.role for p in plan.processes] == ["controller", "worker", "api", "front"]
    api, front = plan.processes[2], plan.processes[3]
    assert api.argv[api.argv.index("--host") + 1] == "127.0.0.1" and api.argv[api.argv.index("--port") + 1] != "8001"
    assert front.argv[front.argv.index("--port") + 1] == "8001" and front.argv[front.argv.index("--host") + 1] == "0.0.0.0"
    # FastChat cannot call tools or hold a schema: the front refuses those by name.
    assert "--no-tools" in front.argv and "--no-structured-output" in front.argv
    assert "s3cret" not in " ".join(front.argv) and front.env["MODELSERVE_API_KEY"] == "s3cret"
    assert front.secret_env == frozenset({"MODELSERVE_API_KEY"})
    assert [c.url for c in plan.clients] == ["http://127.0.0.1:8001/v1"]  # clients keep the deployment's URL
    assert plan.endpoints["openai"] == "http://127.0.0.1:8001/v1"
    assert [type(p).__name__ for p in plan.final_probes] == ["AnthropicMessagesAnswers", "OpenAIResponsesAnswers"]
    assert plan.surfaces == {"messages": "translated", "count_tokens": "translated", "responses": "translated"}


def test_the_builtin_server_serves_them_itself() -> None:
    plan, _ = render("flask-transformers", Deployment(model="x", port=8002))
    assert [p.role for p in plan.processes] == ["server"] and "--port" in plan.processes[0].argv
    assert plan.processes[0].argv[plan.processes[0].argv.index("--port") + 1] == "8002"
    assert set(plan.surfaces.values()) == {"native"}


def test_ollama_keeps_its_own_messages_and_gets_responses_from_the_front() -> None:
    engine = {"binary": "/usr/local/bin/ollama", "version": "0.14.0"}
    plan, text = render("ollama", Deployment(model="qwen2.5:0.5b", backend="ollama", port=11434), TAG, engine)
    assert_golden("plans/fronted/ollama.txt", text)
    front = plan.processes[-1]
    assert front.argv[front.argv.index("--translate") + 1] == "count_tokens,responses"
    assert "--no-tools" not in front.argv
    # The model is pulled after the processes start: the surfaces are probed after Ollama's own checks.
    assert [type(p).__name__ for p in plan.final_probes] == ["OllamaModelListed", "OpenAIChatAnswers",
                                                             "AnthropicMessagesAnswers", "OpenAIResponsesAnswers"]  # fmt: skip
    assert plan.endpoints["ollama"] == "http://127.0.0.1:11434"  # after_start pulls through the front's port


def test_a_reused_server_gets_no_front_and_says_what_it_lacks() -> None:
    running = "Ollama 0.14.0 at http://127.0.0.1:11434"
    plan, _ = render("ollama", Deployment(model="qwen2.5:0.5b", backend="ollama", port=11434), TAG, running=running)
    assert plan.external and plan.processes == ()
    assert plan.surfaces == {"messages": "native", "count_tokens": "no", "responses": "no"}
    assert any(n.startswith("count_tokens, responses: not served by a reused server") for n in plan.notes)
