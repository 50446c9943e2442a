"""The tool family table (configs/tool-families.yaml): which format a model's chat template
writes, and what the built-in server and vLLM are told from it (golden), with the YAML
`tool_parser:` override and `none`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from launcher import devices
from launcher.core.deployment import Deployment
from launcher.models import ResolvedModel
from launcher.models.families import family_of, load_table
from tests.golden import assert_golden
from tests.unit.plans import render

# Fragments of the families' real chat templates: what the markers are matched against.
TEMPLATES = {
    "qwen2.5": "{%- if tools %}{{- '<|im_start|>system\\n' }}...<tools></tools>...For each function call, return a "
               "json object with function name and arguments within <tool_call></tool_call> XML tags:...",
    "hermes-3": "...You are a function calling AI model...<tool_call>\\n{\"name\": <function-name>, ...}\\n</tool_call>",
    "llama-3.1": "{%- if builtin_tools is defined or tools is not none %}...{{- \"<|python_tag|>\" + tool_call.name }}",
    "mistral-v0.3": "{%- if tools is not none %}[AVAILABLE_TOOLS]...{{- \"[TOOL_CALLS][\" }}...",
    "smollm2": "{% for message in messages %}<|im_start|>{{ message['role'] }}\\n{{ message['content'] }}<|im_end|>\\n"
               "{% endfor %}",
    "llama-2": "{% if messages[0]['role'] == 'system' %}[INST] <<SYS>>\\n...",
}


def model_with(tmp_path: Path, template: str) -> ResolvedModel:
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    return ResolvedModel(str(folder), "local", str(folder), "m", "local")


def test_family_detection_golden(tmp_path: Path) -> None:
    table = load_table()
    lines = []
    for name, template in TEMPLATES.items():
        (tmp_path / name).mkdir()
        family = family_of(model_with(tmp_path / name, template).path, table)
        lines.append(f"{name}: " + (f"{family.name} (built-in {family.builtin}, vLLM {family.vllm})" if family else "none"))
    lines.append(f"vLLM fallback: {table.vllm_fallback}")
    assert_golden("tools/families.txt", "\n".join(lines) + "\n")


@pytest.mark.parametrize(("backend", "flag"), [("flask-transformers", "--tool-parser"), ("vllm", "--tool-call-parser")])
def test_a_hermes_model_gets_the_hermes_parser(tmp_path: Path, backend: str, flag: str) -> None:
    model = model_with(tmp_path, TEMPLATES["qwen2.5"])
    plan, _ = render(backend, Deployment(model=model.reference), model)
    argv = plan.processes[0].argv
    assert argv[argv.index(flag) + 1] == "hermes"
    assert "from the model's chat template" in plan.tools


def test_the_yaml_override_and_none(tmp_path: Path) -> None:
    model = model_with(tmp_path, TEMPLATES["qwen2.5"])
    forced = Deployment(model=model.reference, options={"flask-transformers": {"tool_parser": "generic"}})
    plan, _ = render("flask-transformers", forced, model)
    assert plan.processes[0].argv[plan.processes[0].argv.index("--tool-parser") + 1] == "generic"
    off = Deployment(model=model.reference, options={"vllm": {"tool_parser": "none"}})
    plan, _ = render("vllm", off, model, devices.DevicePlan("cpu", (), "test"))
    assert "--tool-call-parser" not in plan.processes[0].argv and plan.tools.startswith("off")


def test_backends_that_cannot_call_tools_say_so() -> None:
    plan, _ = render("fastchat", Deployment(model="/models/smollm2-135m"))
    assert plan.tools.startswith("not supported")
    import backends

    assert not backends.get("fastchat").capabilities.tools
    assert backends.get("flask-transformers").capabilities.tools and backends.get("vllm").capabilities.tools
