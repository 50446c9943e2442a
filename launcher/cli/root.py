"""The ``modelserve`` group: error conversion, logging, and what every command shares.

Each command only translates flags into one launcher call and renders its result; errors from
the ModelserveError family become a message and an exit code here and nowhere else (``--debug``
shows the traceback). Command modules import the launcher inside the command function, so
``--help`` loads click and nothing heavy.
"""

from __future__ import annotations

import importlib
import signal
from collections.abc import Callable
from typing import Any, TypeVar

import click

from launcher.core.errors import ModelserveError, Terminated

F = TypeVar("F", bound=Callable[..., Any])
JSON_VERSION = 1


def apply(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    """Decorate with a list of click options (shared option sets)."""

    def deco(fn: F) -> F:
        for opt in reversed(options):
            fn = opt(fn)
        return fn

    return deco


def report(message: str) -> None:
    """Progress lines while a command works: stderr, so stdout keeps only the result."""
    click.echo(message, err=True)


def warn(message: str) -> None:
    click.secho(f"warning: {message}", fg="yellow", err=True)


# Which module defines each command. The group imports a command's module when that command
# runs (or when --help lists them all), so `modelserve status` loads only launcher.cli.deploy.
COMMAND_MODULES = {
    "up": "deploy", "down": "deploy", "status": "deploy", "logs": "deploy", "health": "deploy", "restart": "deploy",
    "ui": "webui",
    "backends": "machine", "devices": "machine", "env": "machine",
    "run": "ops", "systemd": "ops",
    "config": "config",
    "bench": "benchmark",
    "ray": "cluster",
    "k8s": "kubernetes",
}  # fmt: skip


class ModelserveGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            importlib.import_module(f"launcher.cli.{COMMAND_MODULES[cmd_name]}")  # registers its commands
        return self.commands.get(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ModelserveError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.secho(f"error: {exc}", fg="red", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Terminated as exc:  # SIGTERM/SIGHUP, where a command turned them into an exception
            click.echo(f"stopped by {signal.Signals(exc.signum).name}", err=True)
            ctx.exit(128 + exc.signum)


@click.group(cls=ModelserveGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
@click.version_option(package_name="modelserve")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Start a local model server, prove it answers, and hand agents a config that works.

    \b
    modelserve up -m smollm2-135m -p 8000      # the built-in demo model, on CPU
    modelserve status
    modelserve down smollm2-135m
    """
    ctx.obj = {"debug": debug}
    if debug:  # the launcher itself does not log; this is for the libraries under it
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
