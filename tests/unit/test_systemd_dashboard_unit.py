"""The dashboard's systemd unit (`modelserve systemd render --ui`): golden files for a system and
a user unit; the key only ever comes from the EnvironmentFile."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from launcher import cli
from launcher.systemd.dashboard_unit import DashboardUnit, render_dashboard_unit
from tests.golden import assert_golden


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


def test_the_cli_renders_it() -> None:
    out = CliRunner().invoke(cli.main, ["systemd", "render", "--ui", "0.0.0.0:9000"])
    assert out.exit_code == 0, out.output
    assert " ui --foreground --host 0.0.0.0 --port 9000 --name ui" in out.output
    assert "EnvironmentFile=-/etc/modelserve/ui.env" in out.output
    bad = CliRunner().invoke(cli.main, ["systemd", "render", "--ui", "nowhere"])
    assert bad.exit_code == 2 and "expected HOST:PORT" in bad.output
