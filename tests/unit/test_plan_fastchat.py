from __future__ import annotations

import json
from pathlib import Path

import pytest

from backends.fastchat import choose_conv_template
from launcher import devices
from launcher.core.deployment import Deployment
from launcher.models import ResolvedModel
from tests.golden import assert_golden
from tests.unit.plans import gpu, render

CHATML = "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>'}}{% endfor %}"


def model_with(tmp_path: Path, template: str | None, where: str = "jinja") -> ResolvedModel:
    folder = tmp_path / "m"
    folder.mkdir(exist_ok=True)
    if template is not None and where == "jinja":
        (folder / "chat_template.jinja").write_text(template)
    elif template is not None:
        (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    # A stable path in the golden files regardless of tmp_path.
    return ResolvedModel("/models/smollm2-135m", "local", str(folder), "smollm2-135m", "local")


def test_cpu_three_processes(tmp_path: Path) -> None:
    model = model_with(tmp_path, CHATML)
    plan, text = render("fastchat", Deployment(model="x", served_model_name="HuggingFaceTB/SmolLM2-135M-Instruct"),
                        model)  # fmt: skip
    assert_golden("plans/fastchat/cpu.txt", text.replace(str(tmp_path / "m"), "/models/smollm2-135m"))
    assert [p.role for p in plan.processes] == ["controller", "worker", "api"]
    worker = plan.processes[1]
    assert worker.argv[worker.argv.index("--model-names") + 1] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert worker.env["LOGDIR"] == "/state/deployments/x/logs"
    assert [type(p).__name__ for p in plan.processes[1].ready] == ["WorkerRegistered"]


def test_gpu_key_vllm_worker_and_override(tmp_path: Path) -> None:
    model = model_with(tmp_path, CHATML)
    dplan = devices.DevicePlan("cuda", (gpu(0), gpu(1)), "test")
    dep = Deployment(model="x", api_key="s3cret", host="0.0.0.0", port=8001, options={"fastchat": {"worker": "vllm", "conv_template": "llama-2"}},
                     backend_args={"limit_worker_concurrency": 16})  # fmt: skip
    plan, text = render("fastchat", dep, model, dplan)
    assert_golden("plans/fastchat/gpu2-key-vllm-worker.txt", text.replace(str(tmp_path / "m"), "/models/smollm2-135m"))
    for proc in plan.processes:
        assert "s3cret" not in " ".join(proc.argv)  # appended from the environment by the bootstrap
    assert plan.processes[2].env["MODELSERVE_API_KEY"] == "s3cret"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (CHATML, "qwen-7b-chat"),
        ("[INST] <<SYS>>\n{{ system }}\n<</SYS>>\n\n{{ user }} [/INST]", "llama-2"),
        ("{{ bos_token }}[INST] {{ m['content'] }} [/INST]", "mistral"),
        ("<|user|>\n{{ m }}</s>\n<|assistant|>\n", "zephyr"),
        ("USER: {{ m }} ASSISTANT:", "vicuna_v1.1"),
        ("<|start_header_id|>user<|end_header_id|>", None),  # Llama-3: fschat 0.2.36 has no template
        (None, None),
    ],
)
def test_template_follows_the_models_own_format(tmp_path: Path, template: str | None, expected: str | None) -> None:
    model = model_with(tmp_path, template)
    name, why = choose_conv_template(model.path, None)
    assert name == expected
    assert ("FastChat picks one by path" in why) == (expected is None)


def test_template_from_tokenizer_config_and_override(tmp_path: Path) -> None:
    model = model_with(tmp_path, CHATML, where="tokenizer_config")
    assert choose_conv_template(model.path, None)[0] == "qwen-7b-chat"
    assert choose_conv_template(model.path, "vicuna_v1.1") == ("vicuna_v1.1", "conversation template vicuna_v1.1 "
                                                               "(from conv_template)")  # fmt: skip
