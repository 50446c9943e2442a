"""Every rendered unit passes `systemd-analyze verify`; `systemd-analyze security --offline`
exposure scores are recorded (printed, and written to the test's report folder)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.core.deployment import Deployment
from launcher.lifecycle import fleet_run
from launcher.systemd import units as systemd
from launcher.systemd.dashboard_unit import DashboardUnit, render_dashboard_unit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:  # `make test-tools` installs it (`make test` runs that first, and fails on skips)
        pytest.skip("systemd-analyze is not installed: run `make test-tools` (Debian's systemd package)")
    return exe


def units(tmp_path: Path) -> list[systemd.File]:
    """Rendered with real, existing paths: verify checks that ExecStart's binary exists."""
    exe = str(Path(sys.executable).parent / "modelserve")
    spec_file = tmp_path / "etc" / "smol.yaml"
    spec_file.parent.mkdir()
    spec_file.write_text("model: smollm2-135m\n")
    base = dict(spec_path=spec_file, exe=exe, state_dir=Path("/var/lib/modelserve"),
                cache_dir=Path("/var/cache/modelserve"), version="test")  # fmt: skip
    cpu = Deployment(model="smollm2-135m", name="cpu", device="cpu")
    gpu = Deployment(model="/home/ml/models/llama", name="gpu", backend="vllm", device="cuda:0,1")
    fleet_file = tmp_path / "etc" / "lab.yaml"
    fleet_file.write_text("name: lab\ndeployments:\n  - {name: chat, model: smollm2-135m, preload: true}\n"
                          "  - {name: big, model: /home/ml/models/llama, backend: vllm, device: cuda}\n")  # fmt: skip
    return [
        fleet_run.systemd_unit(fleet_file, user_unit=False, run_as=None),
        systemd.render_unit(cpu, systemd.UnitInputs(**base)),  # type: ignore[arg-type]
        systemd.render_unit(gpu, systemd.UnitInputs(**base, gpu=True, cuda_visible_devices="0,1",  # type: ignore[arg-type]
                                                    model_path="/home/ml/models/llama")),  # fmt: skip
        systemd.render_template(exe),
        render_dashboard_unit(DashboardUnit(name="ui", host="0.0.0.0", port=8090, exe=exe, version="test",
                                            state_dir=Path("/var/lib/modelserve"), cache_dir=Path("/var/cache/modelserve"),
                                            env_file=tmp_path / "etc" / "ui.env", key_env="MODELSERVE_UI_API_KEY")),  # fmt: skip
    ]


def test_rendered_units_verify_and_their_exposure_is_recorded(tmp_path: Path, analyze: str) -> None:
    scores = {}
    for unit in units(tmp_path):
        path = tmp_path / unit.name
        path.write_text(unit.content)
        verify = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60)
        problems = [line for line in verify.stderr.splitlines() if unit.name in line or "Unknown" in line]
        assert verify.returncode == 0 and not problems, f"{unit.name}:\n{verify.stderr}"
        security = subprocess.run([analyze, "security", "--offline=yes", str(path)], capture_output=True,
                                  text=True, timeout=60)  # fmt: skip
        match = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", security.stdout + security.stderr)
        assert match, security.stdout + security.stderr
        scores[unit.name] = (float(match.group(1)), match.group(2))
    report = "\n".join(f"{name}: exposure {score} {verdict}" for name, (score, verdict) in scores.items())
    print("\n" + report)
    (tmp_path / "exposure.txt").write_text(report + "\n")
    # systemd rates 0-10 (lower is safer); "OK" is below 4. GPU units open /dev/nvidia*.
    for name, (score, _) in scores.items():
        assert score <= 4.0, f"{name} exposure {score}: hardening regressed (the README promises <= 4.0)"
