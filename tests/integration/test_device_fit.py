"""`up` checks that the model fits the chosen GPUs before it starts anything (GPU fixtures stand
in for discovery: this machine has no GPU)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from launcher import devices
from launcher.cli import output
from launcher.core.deployment_spec import LoadedSpec
from launcher.core.errors import DeviceError
from launcher.lifecycle import prepare as preparing
from launcher.lifecycle import specs
from launcher.lifecycle import up as starting
from launcher.store import records

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gpu"


@pytest.fixture()
def two_t4(monkeypatch: pytest.MonkeyPatch) -> list[devices.Gpu]:
    gpus = devices.parse_nvidia_smi_csv((FIXTURES / "smi-2gpu-units.csv").read_text())
    monkeypatch.setattr(devices, "discover", lambda *a, **k: list(gpus))
    return gpus


@pytest.fixture()
def eight_a100(monkeypatch: pytest.MonkeyPatch) -> list[devices.Gpu]:
    gpus = devices.parse_nvidia_smi_csv((FIXTURES / "smi-8gpu-mixed.csv").read_text())
    monkeypatch.setattr(devices, "discover", lambda *a, **k: list(gpus))
    return gpus


@pytest.fixture()
def llama7b(tmp_path: Path) -> Path:
    folder = tmp_path / "Llama-2-7b-chat-hf"
    folder.mkdir()
    shutil.copy(FIXTURES / "llama-2-7b-config.json", folder / "config.json")
    return folder


def load(tmp_path: Path, **values: object) -> LoadedSpec:
    lines = [f"{k}: {v}" for k, v in values.items()] + ["agentscope:", f"  config: {tmp_path / 'cfg.json'}"]
    path = tmp_path / "dep.yaml"
    path.write_text("\n".join(lines) + "\n")
    return specs.load(path)


def test_up_refuses_before_starting_anything(tmp_path: Path, two_t4: list[devices.Gpu], llama7b: Path) -> None:
    loaded = load(tmp_path, model=llama7b, backend="flask-transformers", device="cuda", port=8123)
    with pytest.raises(DeviceError) as err:
        starting.up(loaded, report=lambda _: None)
    text = str(err.value)
    assert "the model needs ~16.2 GiB per GPU" in text and "GPU 0 has 14.6 GiB free" in text
    assert "--force" in text
    assert err.value.exit_code == 12
    assert records.list_all() == [] and not (tmp_path / "msh" / "deployments" / "llama-2-7b-chat-hf" / "logs").exists()
    assert not (tmp_path / "cfg.json").exists()


def test_force_gets_past_the_check(tmp_path: Path, two_t4: list[devices.Gpu], llama7b: Path) -> None:
    loaded = load(tmp_path, model=llama7b, backend="flask-transformers", device="cuda", force="true")
    prep = preparing.prepare(loaded.deployment, report=lambda _: None)
    assert prep.fit is not None and not prep.fit.fits
    assert prep.launch.processes[0].env["CUDA_VISIBLE_DEVICES"] == "0"  # the T4 with more free memory


def test_dry_run_shows_the_verdict_and_the_tp_problem(tmp_path: Path, eight_a100: list[devices.Gpu],
                                                      llama7b: Path) -> None:  # fmt: skip
    loaded = load(tmp_path, model=llama7b, backend="vllm", device="cuda", gpus=3)
    text = output.plan_text(loaded, preparing.prepare(loaded.deployment, dry_run=True, report=lambda _: None))
    assert "memory: tensor parallel 3 does not divide the model's 32 attention heads" in text
    assert "devices: GPU 1" in text and "GPU 3" in text and "GPU 6" in text  # the three freest A100s


def test_vllm_on_a_busy_gpu_is_refused_with_the_utilization_reason(
    tmp_path: Path, eight_a100: list[devices.Gpu], llama7b: Path
) -> None:
    loaded = load(tmp_path, model=llama7b, backend="vllm", device="cuda:2", max_model_len=2048)
    prep = preparing.prepare(loaded.deployment, dry_run=True, report=lambda _: None)
    assert prep.fit is not None and not prep.fit.fits
    assert "GPU 2 has 39.5 GiB free, less than the 0.90 x 80.0 GiB" in prep.fit.message


@pytest.fixture()
def host_23_gib(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host round one measured on: 23 GiB available (the real figure varies with the tenants)."""
    monkeypatch.setattr(devices, "memory_available", lambda: 23 * 2**30)


def test_on_the_cpu_host_ram_is_checked_like_gpu_memory(tmp_path: Path, host_23_gib: None, llama7b: Path) -> None:
    loaded = load(tmp_path, model=llama7b, backend="flask-transformers", device="cpu", port=8123)
    with pytest.raises(DeviceError) as err:
        starting.up(loaded, report=lambda _: None)
    assert err.value.exit_code == 12
    assert err.value.message.startswith("on the CPU the model needs ~")
    assert "GiB of RAM (~6.74 B parameters estimated from config.json" in err.value.message
    assert "but 23.0 GiB is available" in err.value.message
    hint = err.value.hint or ""
    assert "--dtype bfloat16 (~" in hint and "-b ollama" in hint and "--force" in hint
    assert records.list_all() == [] and not (tmp_path / "cfg.json").exists()
    # In bfloat16 the same model fits: the fix the message names works.
    half = load(tmp_path, model=llama7b, backend="flask-transformers", device="cpu", dtype="bfloat16", max_model_len=4096)
    prep = preparing.prepare(half.deployment, report=lambda _: None, dry_run=True)
    assert prep.fit is not None and prep.fit.fits, prep.fit


def test_a_model_far_beyond_this_hosts_ram_is_refused_for_real(tmp_path: Path) -> None:
    """No stand-in numbers: a 1-trillion-parameter config against this machine's real RAM."""
    folder = tmp_path / "huge"
    folder.mkdir()
    (folder / "config.json").write_text('{"hidden_size": 32768, "num_hidden_layers": 80, "num_attention_heads": 64, '
                                        '"intermediate_size": 131072, "vocab_size": 32000}')  # fmt: skip
    loaded = load(tmp_path, model=folder, backend="flask-transformers", device="cpu", port=8124)
    with pytest.raises(DeviceError, match="on the CPU the model needs"):
        starting.up(loaded, report=lambda _: None)
