"""Device discovery and planning, driven by nvidia-smi / NVML outputs in tests/fixtures/gpu."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from launcher import devices
from launcher.core.errors import DeviceError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "gpu"


def smi(name: str) -> Any:
    """An nvidia-smi replacement that prints the fixture (or fails like a driverless host)."""

    def run(argv: Sequence[str]) -> str:
        text = (FIXTURES / name).read_text()
        if name == "smi-no-driver.txt":
            raise subprocess.CalledProcessError(9, list(argv), output=text)
        return text

    return run


class ReplayNvml:
    """The parts of pynvml discovery uses, answering from a recorded JSON file."""

    class NVMLError(Exception):
        pass

    def __init__(self, name: str | None) -> None:
        self.devices = json.loads((FIXTURES / name).read_text())["devices"] if name else None

    def nvmlInit(self) -> None:  # noqa: N802 (pynvml's names)
        if self.devices is None:
            raise self.NVMLError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:  # noqa: N802
        pass

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.devices or [])

    def nvmlDeviceGetHandleByIndex(self, i: int) -> dict[str, Any]:  # noqa: N802
        return (self.devices or [])[i]

    def nvmlDeviceGetMemoryInfo(self, h: dict[str, Any]) -> Any:  # noqa: N802
        return SimpleNamespace(total=h["total"], used=h["used"], free=h["free"])

    def nvmlDeviceGetName(self, h: dict[str, Any]) -> bytes:  # noqa: N802
        return h["name"].encode()  # older bindings return bytes

    def nvmlDeviceGetUUID(self, h: dict[str, Any]) -> str:  # noqa: N802
        return h["uuid"]

    def nvmlDeviceGetUtilizationRates(self, h: dict[str, Any]) -> Any:  # noqa: N802
        if h["util"] is None:
            raise self.NVMLError("Not Supported")
        return SimpleNamespace(gpu=h["util"])


def discover(smi_name: str, nvml_name: str | None = None, visible: str | None = None) -> list[devices.Gpu]:
    env = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    return devices.discover(env, nvml=ReplayNvml(nvml_name), smi=smi(smi_name))


def test_no_driver_means_cpu_said_out_loud() -> None:
    gpus = discover("smi-no-driver.txt")
    assert gpus == []
    plan = devices.plan("auto", gpus)
    assert (plan.kind, plan.reason) == ("cpu", "no GPU found")
    with pytest.raises(DeviceError, match="asks for a GPU, but none is visible") as err:
        devices.plan("cuda", gpus)
    assert "--device cpu" in str(err.value)


def test_one_gpu() -> None:
    (gpu,) = discover("smi-1gpu.csv")
    assert (gpu.index, gpu.name, gpu.memory_total_mib, gpu.memory_free_mib, gpu.utilization_pct) == (
        0, "NVIDIA GeForce RTX 4090", 24564, 23036, 3)  # fmt: skip
    plan = devices.plan("cuda", [gpu])
    assert plan.cuda_visible_devices == "0" and plan.tensor_parallel == 1


def test_csv_with_header_and_units() -> None:
    gpus = discover("smi-2gpu-units.csv")
    assert [(g.name, g.memory_free_mib, g.utilization_pct) for g in gpus] == [("Tesla T4", 14923, 0),
                                                                            ("Tesla T4", 3664, 48)]  # fmt: skip


def test_nvml_is_preferred_and_agrees_with_nvidia_smi() -> None:
    via_nvml = discover("smi-no-driver.txt", "nvml-8gpu-mixed.json")  # smi would fail: NVML answered
    via_smi = discover("smi-8gpu-mixed.csv")
    assert [g.uuid for g in via_nvml] == [g.uuid for g in via_smi]
    assert [g.memory_free_mib for g in via_nvml] == [g.memory_free_mib for g in via_smi]
    assert via_nvml[7].utilization_pct is None  # "Not Supported" is not an error


def test_eight_gpus_mixed_usage_picks_the_freest() -> None:
    gpus = discover("smi-8gpu-mixed.csv")
    two = devices.plan("cuda", gpus, count=2)
    assert [g.index for g in two.gpus] == [1, 3]  # 81415 MiB free each; 6 has 4 MiB less
    assert two.cuda_visible_devices == "1,3" and two.tensor_parallel == 2
    four = devices.plan("cuda", gpus, count=4)
    assert [g.index for g in four.gpus] == [1, 3, 5, 6]
    exact = devices.plan("cuda:0,4", gpus)
    assert exact.cuda_visible_devices == "0,4"
    with pytest.raises(DeviceError, match="cuda:8 does not exist"):
        devices.plan("cuda:8", gpus)
    with pytest.raises(DeviceError, match="only 8 GPU"):
        devices.plan("cuda", gpus, count=9)


def test_cuda_visible_devices_hides_and_renumbers() -> None:
    gpus = discover("smi-8gpu-mixed.csv", visible="5,2")
    assert [g.index for g in gpus] == [5, 2]  # CUDA's cuda:0 is physical GPU 5
    plan = devices.plan("cuda:0", gpus)
    assert plan.cuda_visible_devices == "5"  # the child gets the physical id
    by_uuid = discover("smi-8gpu-mixed.csv", visible="GPU-0a1b2c3d-6666")
    assert [g.index for g in by_uuid] == [6]
    assert [g.index for g in discover("smi-8gpu-mixed.csv", visible="3,99,4")] == [3]  # CUDA stops at a bad id
    assert discover("smi-8gpu-mixed.csv", visible="") == []
    assert devices.plan("auto", discover("smi-8gpu-mixed.csv", visible="-1")).kind == "cpu"


def recorded_sets() -> list[str]:
    """Each NVML reading with nvidia-smi's CSV of the same moment: the constructed set, and every
    set `tests/fixtures/gpu/record.py` wrote on a lent GPU machine (the device check runs it)."""
    names = (p.stem.removeprefix("nvml-") for p in FIXTURES.glob("nvml-*.json"))
    return sorted(n for n in names if (FIXTURES / f"smi-{n}.csv").is_file())


@pytest.mark.parametrize("name", recorded_sets())
def test_recorded_discovery_agrees_and_plans(name: str) -> None:
    via_nvml = discover("smi-no-driver.txt", f"nvml-{name}.json")
    via_smi = discover(f"smi-{name}.csv")
    assert via_nvml and [(g.index, g.uuid, g.name) for g in via_nvml] == [(g.index, g.uuid, g.name) for g in via_smi]
    for a, b in zip(via_nvml, via_smi, strict=True):
        assert abs(a.memory_total_mib - b.memory_total_mib) <= 1  # NVML's bytes floored to MiB
        assert abs(a.memory_free_mib - b.memory_free_mib) <= a.memory_total_mib // 50  # read moments apart
    if (FIXTURES / f"smi-{name}-units.csv").is_file():  # --format=csv: header and units
        assert discover(f"smi-{name}-units.csv") == via_smi
    if (FIXTURES / f"devices-{name}.json").is_file():  # `modelserve devices --json` on that machine
        listed = json.loads((FIXTURES / f"devices-{name}.json").read_text())["gpus"]
        assert [(g["cuda"], g["index"], g["uuid"], g["name"]) for g in listed] == [
            (f"cuda:{i}", g.index, g.uuid, g.name) for i, g in enumerate(via_nvml)]  # fmt: skip
    plan = devices.plan("cuda", via_nvml)
    (chosen,) = plan.gpus
    assert chosen.memory_free_mib == max(g.memory_free_mib for g in via_nvml)
    free = chosen.memory_free_mib * 1024 * 1024
    half = devices.MemoryEstimate(weights=free // 2 - 2**30, kv_cache=0, overhead=2**30, how="half of it")
    assert devices.check_fit(half, plan).fits
    over = devices.MemoryEstimate(weights=free + free // 2, kv_cache=0, overhead=2**30, how="more than it")
    verdict = devices.check_fit(over, plan)
    assert not verdict.fits and f"GPU {chosen.index} has {chosen.free_gib:.1f} GiB free" in verdict.message


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> None:
    header: dict[str, Any] = {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        n = 1
        for d in shape:
            n *= d
        size = n * devices.DTYPE_BYTES[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + b"\0" * offset)


def test_estimate_reads_safetensors_headers(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "llama-2-7b-config.json", tmp_path / "config.json")
    write_safetensors(tmp_path / "model.safetensors", {"a": ("BF16", [1000, 1000]), "b": ("F32", [500])})
    est = devices.estimate_memory(tmp_path, dtype="float16", max_model_len=1024)
    assert est is not None
    assert est.weights == 1_000_500 * 2  # counted in parameters, priced at the serving dtype
    assert est.kv_cache == 2 * 32 * 32 * 128 * 1024 * 2
    assert "from 1 safetensors header" in est.how


def test_seven_b_does_not_fit_anywhere_and_says_by_how_much(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "llama-2-7b-config.json", tmp_path / "config.json")
    est = devices.estimate_memory(tmp_path, dtype="float16")
    assert est is not None and 6.7e9 * 2 < est.weights < 6.8e9 * 2  # ~6.74 B parameters from config.json
    gpus = discover("smi-2gpu-units.csv")  # two T4s, 14.6 and 3.6 GiB free
    one = devices.plan("cuda", gpus)
    verdict = devices.check_fit(est, one, visible=len(gpus))
    assert not verdict.fits
    assert "needs ~16.2 GiB per GPU" in verdict.message and "GPU 0 has 14.6 GiB free" in verdict.message
    assert "--gpus 2" in verdict.hint and "--force" in verdict.hint
    both = devices.plan("cuda", gpus, count=2)
    verdict2 = devices.check_fit(est, both)
    assert not verdict2.fits and "GPU 1 has 3.6 GiB free" in verdict2.message


def test_vllm_utilization_needs_that_much_free(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "llama-2-7b-config.json", tmp_path / "config.json")
    est = devices.estimate_memory(tmp_path, dtype="float16", max_model_len=2048)
    assert est is not None
    gpus = discover("smi-8gpu-mixed.csv")
    busy = devices.plan("cuda:2", gpus)  # 39.5 GiB free of 80
    verdict = devices.check_fit(est, busy, utilization=0.9)
    assert not verdict.fits and "less than the 0.90 x 80.0 GiB" in verdict.message
    assert devices.check_fit(est, busy, utilization=0.45).fits
    assert devices.check_fit(est, devices.plan("cuda", gpus), utilization=0.9).fits


def test_tensor_parallel_must_divide_heads(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "llama-2-7b-config.json", tmp_path / "config.json")
    assert devices.tensor_parallel_problem(tmp_path, 2) is None
    assert "does not divide the model's 32 attention heads" in (devices.tensor_parallel_problem(tmp_path, 3) or "")


@pytest.mark.may_skip  # on a GPU host, where the recorded fixtures cover discovery instead
def test_real_host_has_no_gpu_here() -> None:
    # This machine has no NVIDIA driver: discovery must say so quietly, not crash.
    if shutil.which("nvidia-smi"):
        pytest.skip("a GPU host: covered by the fixture tests")
    assert devices.discover({}) == []
