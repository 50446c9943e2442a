from __future__ import annotations

from launcher import devices
from launcher.core.deployment import Deployment
from tests.golden import assert_golden
from tests.unit.plans import LOCAL, REMOTE, gpu, render


def test_cpu_default() -> None:
    plan, text = render("flask-transformers", Deployment(model=LOCAL.reference))
    assert_golden("plans/flask-transformers/cpu.txt", text)
    assert plan.served_model_name == "smollm2-135m"


def test_cpu_many_cores_key_and_passthrough() -> None:
    dep = Deployment(model=LOCAL.reference, name="smol", host="0.0.0.0", port=8001, api_key="s3cret",
                     served_model_name="smol-chat", options={"flask-transformers": {"max_batch_size": 4}}, backend_args={"trust_remote_code": True},
                     env={"HF_HOME": "/data/hf"})  # fmt: skip
    plan, text = render("flask-transformers", dep, cpus=16)
    assert_golden("plans/flask-transformers/cpu-key-passthrough.txt", text)
    # The key travels in the environment, never in argv (argv shows in `ps`).
    assert all("s3cret" not in arg for arg in plan.processes[0].argv)
    assert "--threads 16" in plan.processes[0].command_line()  # every core: one batched engine


def test_one_gpu_remote_model() -> None:
    dplan = devices.DevicePlan("cuda", (gpu(3),), "test")
    _, text = render("flask-transformers", Deployment(model=REMOTE.reference), REMOTE, dplan)
    assert_golden("plans/flask-transformers/gpu1-remote.txt", text)
    assert "HF_HUB_OFFLINE" not in text  # the engine must be allowed to download


def test_two_gpus_uses_one_and_says_so() -> None:
    dplan = devices.DevicePlan("cuda", (gpu(0), gpu(1)), "test")
    plan, text = render("flask-transformers", Deployment(model=LOCAL.reference, dtype="float16"), LOCAL, dplan)
    assert_golden("plans/flask-transformers/gpu2.txt", text)
    assert any("uses one GPU" in n for n in plan.notes)
