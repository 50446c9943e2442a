"""`modelserve run` and `modelserve systemd ...`: foreground supervision and its units."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from launcher import paths

if TYPE_CHECKING:
    from launcher.systemd import File

F = TypeVar("F", bound=Callable[..., Any])


def _spec_path(name: str | None, config_file: str | None) -> Path:
    if bool(name) == bool(config_file):
        raise click.UsageError("give a deployment NAME (a NAME.yaml in the config folders) or -c FILE, not both")
    return Path(config_file).absolute() if config_file else paths.find_deployment_file(name or "").absolute()


@click.command()
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
    from launcher import runner, spec

    loaded = spec.load(_spec_path(name, config_file))
    sys.exit(runner.ForegroundRunner(loaded).run())


@click.group()
def systemd() -> None:
    """systemd units that run deployments with `modelserve run`.

    \b
    modelserve systemd render -c /etc/modelserve/llama2.yaml
    modelserve systemd install -c ~/.config/modelserve/smol.yaml --user
    modelserve systemd install --template      # modelserve@.service for /etc/modelserve/*.yaml
    """


def _exe() -> str:
    beside = Path(sys.executable).parent / "modelserve"
    return str(beside) if beside.exists() else (shutil.which("modelserve") or str(Path(sys.argv[0]).absolute()))


def _unit(name: str | None, config_file: str | None, user_unit: bool, user: str | None) -> File:
    from importlib.metadata import version

    from launcher import devices, models, spec
    from launcher import systemd as units

    path = _spec_path(name, config_file)
    dep = spec.load(path).deployment
    gpu = dep.device.startswith("cuda") or (dep.device == "auto" and bool(devices.discover()))
    cuda = dep.device.split(":", 1)[1] if dep.device.startswith("cuda:") else None
    try:
        model_path = models.resolve(dep.model, prepare=False).path
    except Exception:  # a model that is not here yet is the unit's problem at start, not now
        model_path = None
    inputs = units.UnitInputs(
        spec_path=path,
        exe=_exe(),
        state_dir=paths.home() if user_unit else Path("/var/lib/modelserve"),
        cache_dir=paths.cache() if user_unit else Path("/var/cache/modelserve"),
        user=user,
        user_unit=user_unit,
        gpu=gpu,
        cuda_visible_devices=cuda,
        model_path=model_path,
        python=dep.python,
        version=version("modelserve"),
    )
    return units.render_unit(dep, inputs)


UNIT_OPTIONS = [
    click.argument("name", required=False),
    click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False), help="Deployment YAML file."),
    click.option("--user", "user_unit", is_flag=True, help="A user unit (systemctl --user)."),
    click.option("--run-as", help="User= for a system unit [root]."),
]


def _options(fn: F) -> F:
    for opt in reversed(UNIT_OPTIONS):
        fn = opt(fn)
    return fn


@systemd.command("render")
@_options
@click.option("-o", "--output", type=click.Path(file_okay=False), help="Write into this folder instead of printing.")
def render(name: str | None, config_file: str | None, user_unit: bool, run_as: str | None, output: str | None) -> None:
    """Print (or write to -o DIR) the unit for one deployment."""
    _emit(_unit(name, config_file, user_unit, run_as), Path(output) if output else None)


@systemd.command("install")
@_options
@click.option("--template", is_flag=True, help="Install modelserve@.service instead (one instance per /etc/modelserve/NAME.yaml).")
def install(name: str | None, config_file: str | None, user_unit: bool, run_as: str | None, template: bool) -> None:
    """Write the unit into systemd's folder and print the systemctl lines to run."""
    from launcher import systemd as units

    unit = units.render_template(_exe()) if template else _unit(name, config_file, user_unit, run_as)
    if user_unit:
        folder = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "systemd" / "user"
    else:
        folder = Path(os.environ.get("MODELSERVE_SYSTEMD_DIR", "/etc/systemd/system"))
    _emit(unit, folder)
    target = "modelserve@NAME.service" if template else unit.name
    click.echo("now run:\n  " + "\n  ".join(units.systemctl_lines(target, user_unit=user_unit)))


def _emit(unit: File, folder: Path | None) -> None:
    if folder is None:
        click.echo(unit.content, nl=False)
        return
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / unit.name
    tmp = target.with_name(f".{unit.name}.tmp")
    tmp.write_text(unit.content)
    tmp.chmod(unit.mode)
    os.replace(tmp, target)
    click.echo(f"wrote {target}")
