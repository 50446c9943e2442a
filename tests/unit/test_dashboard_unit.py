"""The dashboard's systemd unit (`modelserve systemd render --ui`): golden files for a system and
a user unit; the key only ever comes from the EnvironmentFile."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from launcher.systemd.dashboard_unit import DashboardUnit, render_dashboard_unit
from tests.golden import assert_golden

ROOT = Path(__file__).resolve().parents[2]


def unit(**over: object) -> DashboardUnit:
    fields: dict[str, object] = dict(name="ui", host="0.0.0.0", port=8090, exe="/opt/modelserve/bin/modelserve",
                                     state_dir=Path("/var/lib/modelserve"), cache_dir=Path("/var/cache/modelserve"),
                                     env_file=Path("/etc/modelserve/ui.env"), key_env="MODELSERVE_UI_API_KEY",
                                     user="modelserve", version="test")  # fmt: skip
    fields.update(over)
    return DashboardUnit(**fields)  # type: ignore[arg-type]


def test_system_and_user_units() -> None:
    system = render_dashboard_unit(unit())
    assert system.name == "modelserve-ui.service"
    assert_golden("systemd/dashboard.service", system.content)
    user = render_dashboard_unit(unit(host="127.0.0.1", user=None, user_unit=True, state_dir=Path("/home/a/.local/state/modelserve"),
                                      cache_dir=Path("/home/a/.cache/modelserve"),
                                      env_file=Path("/home/a/.local/state/modelserve/ui.env")))  # fmt: skip
    assert_golden("systemd/dashboard-user.service", user.content)


def test_the_cli_renders_it(cli_env: dict[str, str]) -> None:
    out = subprocess.run([sys.executable, "-m", "launcher.cli", "systemd", "render", "--ui", "0.0.0.0:9000"],
                         capture_output=True, text=True, env=cli_env, timeout=60, cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert " ui --foreground --host 0.0.0.0 --port 9000 --name ui" in out.stdout
    assert "EnvironmentFile=-/etc/modelserve/ui.env" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "launcher.cli", "systemd", "render", "--ui", "nowhere"],
                         capture_output=True, text=True, env=cli_env, timeout=60, cwd=ROOT)  # fmt: skip
    assert bad.returncode == 2 and "expected HOST:PORT" in bad.stderr
