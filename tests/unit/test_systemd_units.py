from __future__ import annotations

from pathlib import Path

import pytest

from launcher.core import resources
from launcher.core.deployment import Deployment
from launcher.systemd import units as systemd
from tests.golden import assert_golden


def inputs(**over: object) -> systemd.UnitInputs:
    values: dict[str, object] = dict(spec_path=Path("/etc/modelserve/llama2.yaml"), exe="/opt/modelserve/bin/modelserve",
                                     state_dir=Path("/var/lib/modelserve"), cache_dir=Path("/var/cache/modelserve"),
                                     user="modelserve", version="0.1.0")  # fmt: skip
    values.update(over)
    return systemd.UnitInputs(**values)  # type: ignore[arg-type]


def test_cpu_unit_golden() -> None:
    dep = Deployment(model="smollm2-135m", name="smol", backend="flask-transformers", device="cpu", port=8000,
                     agentscope={"config": "/srv/agents/model_config.json"})  # fmt: skip
    unit = systemd.render_unit(dep, inputs(spec_path=Path("/etc/modelserve/smol.yaml"), model_path="/var/cache/m"))
    assert unit.name == "modelserve-smol.service"
    assert_golden("systemd/cpu.service", unit.content)
    assert "KillMode=process" not in unit.content and "PrivateDevices=yes" in unit.content


def test_gpu_unit_golden_model_in_home() -> None:
    dep = Deployment(model="/home/ml/models/Llama-2-7b-chat-hf", name="llama2", backend="vllm", device="cuda:0,1",
                     port=8000, timeout=900, env={"HF_HOME": "/home/ml/.cache/huggingface"})  # fmt: skip
    unit = systemd.render_unit(dep, inputs(gpu=True, cuda_visible_devices="0,1",
                                           model_path="/home/ml/models/Llama-2-7b-chat-hf"))  # fmt: skip
    assert_golden("systemd/gpu.service", unit.content)
    assert "ProtectHome=read-only" in unit.content  # the model lives under /home
    assert "DeviceAllow=/dev/nvidiactl rw" in unit.content and "PrivateDevices=no" in unit.content
    assert "Environment=CUDA_VISIBLE_DEVICES=0,1" in unit.content


def test_user_unit_golden() -> None:
    dep = Deployment(model="smollm2-135m", name="smol", port=8001, agentscope={"config": None})
    unit = systemd.render_unit(dep, inputs(spec_path=Path("/home/me/.config/modelserve/smol.yaml"), user_unit=True,
                                           state_dir=Path("/home/me/.local/state/modelserve"),
                                           cache_dir=Path("/home/me/.cache/modelserve"), exe="/home/me/.venv/bin/modelserve"))  # fmt: skip
    assert_golden("systemd/user.service", unit.content)
    assert "User=" not in unit.content and "WantedBy=default.target" in unit.content


def test_template_in_the_repo_is_what_the_renderer_makes() -> None:
    shipped = (resources.systemd_dir() / "modelserve@.service").read_text()
    assert shipped == systemd.render_template("/usr/local/bin/modelserve").content


@pytest.mark.parametrize(
    ("arg", "quoted"),
    [("/usr/bin/modelserve", "/usr/bin/modelserve"), ("/srv/my models/a.yaml", '"/srv/my models/a.yaml"'),
     ("50%", "50%%"), ("$HOME", "$$HOME"), ('say "hi"', '"say \\"hi\\""'), ("a\\b", '"a\\\\b"')],  # fmt: skip
)
def test_exec_start_quoting(arg: str, quoted: str) -> None:
    assert systemd.quote_arg(arg) == quoted


def test_spaces_in_paths_survive_quoting() -> None:
    dep = Deployment(model="m", name="x")
    unit = systemd.render_unit(dep, inputs(spec_path=Path("/srv/my deployments/x.yaml")))
    assert 'ExecStart=/opt/modelserve/bin/modelserve run --config "/srv/my deployments/x.yaml"' in unit.content
