"""`modelserve run` and `modelserve systemd ...`: foreground supervision and its units."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from launcher.cli.root import apply, main, report, warn

if TYPE_CHECKING:
    from launcher.systemd.units import File

F = TypeVar("F", bound=Callable[..., Any])


def _spec_path(name: str | None, config_file: str | None) -> Path:
    from launcher.lifecycle import specs

    if bool(name) == bool(config_file):
        raise click.UsageError("give a deployment NAME (a NAME.yaml in the config folders) or -c FILE, not both")
    return specs.find(name, config_file)


@main.command()
@click.argument("name", required=False)
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False), help="Deployment YAML file.")
def run(name: str | None, config_file: str | None) -> None:
    """Start a deployment and supervise it in the foreground (what systemd units run).

    Restarts it with backoff when a process dies after readiness; SIGTERM or Ctrl-C stops it
    (a second Ctrl-C kills at once). Under systemd it reports READY=1 only once it answers.

    \b
    modelserve run -c configs/flask-transformers.yaml
    modelserve run llama2          # /etc/modelserve/llama2.yaml or ~/.config/modelserve/llama2.yaml
    """
    from launcher.core.fleet_spec import is_fleet_file
    from launcher.lifecycle import run as running
    from launcher.lifecycle import specs

    path = _spec_path(name, config_file)
    if is_fleet_file(path):
        from launcher.lifecycle import fleet_run

        sys.exit(fleet_run.run_fleet(path, report=report))
    loaded = specs.load(path)
    for note in loaded.notes:
        warn(note)
    sys.exit(running.run(loaded, report=report))


@main.group()
def systemd() -> None:
    """systemd units that run deployments with `modelserve run`.

    \b
    modelserve systemd render -c /etc/modelserve/llama2.yaml
    modelserve systemd install -c ~/.config/modelserve/smol.yaml --user
    modelserve systemd install --template      # modelserve@.service for /etc/modelserve/*.yaml
    """


def _unit(name: str | None, config_file: str | None, user_unit: bool, run_as: str | None,
          ui_address: str | None = None) -> File:  # fmt: skip
    from launcher.core.fleet_spec import is_fleet_file
    from launcher.lifecycle import specs

    if ui_address:
        return _dashboard_unit(ui_address, user_unit, run_as)
    path = _spec_path(name, config_file)
    if is_fleet_file(path):
        from launcher.lifecycle import fleet_run

        return fleet_run.systemd_unit(path, user_unit=user_unit, run_as=run_as)
    return specs.systemd_unit(path, user_unit=user_unit, run_as=run_as)


def _dashboard_unit(address: str, user_unit: bool, run_as: str | None) -> File:
    from launcher.lifecycle import dashboard

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"{address!r}: expected HOST:PORT, e.g. 127.0.0.1:8090", param_hint="--ui")
    return dashboard.systemd_unit(host=host.strip("[]"), port=int(port), user_unit=user_unit, run_as=run_as)


UNIT_OPTIONS = [
    click.argument("name", required=False),
    click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False), help="Deployment YAML file."),
    click.option("--user", "user_unit", is_flag=True, help="A user unit (systemctl --user)."),
    click.option("--run-as", help="User= for a system unit [root]."),
    click.option("--ui", "ui_address", is_flag=False, flag_value="127.0.0.1:8090", default=None, metavar="[HOST:PORT]",
                 help="The dashboard's unit instead (`modelserve ui --foreground`) [127.0.0.1:8090]."),
]


@systemd.command("render")
@apply(UNIT_OPTIONS)
@click.option("-o", "--output", type=click.Path(file_okay=False), help="Write into this folder instead of printing.")
def render(name: str | None, config_file: str | None, user_unit: bool, run_as: str | None, ui_address: str | None,
           output: str | None) -> None:  # fmt: skip
    """Print (or write to -o DIR) the unit for one deployment (or the dashboard, with --ui)."""
    _emit(_unit(name, config_file, user_unit, run_as, ui_address), Path(output) if output else None)


@systemd.command("install")
@apply(UNIT_OPTIONS)
@click.option("--template", is_flag=True, help="Install modelserve@.service instead (one instance per /etc/modelserve/NAME.yaml).")
def install(name: str | None, config_file: str | None, user_unit: bool, run_as: str | None, ui_address: str | None,
            template: bool) -> None:  # fmt: skip
    """Write the unit into systemd's folder and print the systemctl lines to run."""
    from launcher.lifecycle.specs import modelserve_executable
    from launcher.systemd import units

    unit = (units.render_template(modelserve_executable()) if template
            else _unit(name, config_file, user_unit, run_as, ui_address))  # fmt: skip
    _emit(unit, units.unit_dir(user_unit=user_unit))
    target = "modelserve@NAME.service" if template else unit.name
    click.echo("now run:\n  " + "\n  ".join(units.systemctl_lines(target, user_unit=user_unit)))


def _emit(unit: File, folder: Path | None) -> None:
    from launcher.store.files import write_atomic

    if folder is None:
        click.echo(unit.content, nl=False)
        return
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / unit.name
    write_atomic(target, unit.content, mode=unit.mode, keep_mode=False)
    click.echo(f"wrote {target}")
