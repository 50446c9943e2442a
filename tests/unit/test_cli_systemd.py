"""`modelserve systemd render|install` through the CLI: files written where systemd looks, the
systemctl lines printed, nothing written on bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from launcher import cli


@pytest.fixture()
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "conf" / "smol.yaml"
    path.parent.mkdir()
    path.write_text("model: smollm2-135m\nname: smol\ndevice: cpu\nport: 8123\n")
    return path


def test_render_prints_the_unit(spec_file: Path) -> None:
    result = CliRunner().invoke(cli.main, ["systemd", "render", "-c", str(spec_file), "--run-as", "modelserve"])
    assert result.exit_code == 0, result.output
    assert f"run --config {spec_file}" in result.output and "User=modelserve" in result.output
    assert "Type=notify" in result.output


def test_install_system_unit_and_lines(spec_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSERVE_SYSTEMD_DIR", str(tmp_path / "system"))
    result = CliRunner().invoke(cli.main, ["systemd", "install", "-c", str(spec_file)])
    assert result.exit_code == 0, result.output
    unit = tmp_path / "system" / "modelserve-smol.service"
    assert unit.exists() and "WantedBy=multi-user.target" in unit.read_text()
    assert "systemctl daemon-reload" in result.output and "systemctl enable --now modelserve-smol.service" in result.output


def test_install_user_unit(spec_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    result = CliRunner().invoke(cli.main, ["systemd", "install", "-c", str(spec_file), "--user"])
    assert result.exit_code == 0, result.output
    unit = tmp_path / "xdg" / "systemd" / "user" / "modelserve-smol.service"
    assert "WantedBy=default.target" in unit.read_text()
    assert "systemctl --user enable --now modelserve-smol.service" in result.output


def test_install_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSERVE_SYSTEMD_DIR", str(tmp_path / "system"))
    result = CliRunner().invoke(cli.main, ["systemd", "install", "--template"])
    assert result.exit_code == 0, result.output
    assert "ExecStart=" in (tmp_path / "system" / "modelserve@.service").read_text()
    assert "modelserve@NAME.service" in result.output


def test_run_and_render_find_name_in_config_dirs(spec_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSERVE_CONFIG_DIR", str(spec_file.parent))
    result = CliRunner().invoke(cli.main, ["systemd", "render", "smol"])
    assert result.exit_code == 0 and f"--config {spec_file}" in result.output
    missing = CliRunner().invoke(cli.main, ["systemd", "render", "nope"])
    assert missing.exit_code == 3 and "no deployment file nope.yaml" in missing.output


def test_invalid_spec_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: m\nprot: 1\n")
    monkeypatch.setenv("MODELSERVE_SYSTEMD_DIR", str(tmp_path / "system"))
    result = CliRunner().invoke(cli.main, ["systemd", "install", "-c", str(bad)])
    assert result.exit_code == 3 and "prot: unknown key" in result.output
    assert not (tmp_path / "system").exists()
