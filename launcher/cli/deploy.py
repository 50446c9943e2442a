"""`up`, `down`, `status`, `logs`, `health`: one deployment's life, seen from the command line."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from launcher.cli.root import JSON_VERSION, apply, main, report, warn
from launcher.core.names import TASKS

UP_OPTIONS = [
    click.option("-m", "--model", help="Local folder, HF/ModelScope ID in the local cache, or alias (smollm2-135m)."),
    click.option("-p", "--port", type=int, help="Port to serve on [8000]."),
    click.option("-b", "--backend", help="auto or a backend name (see `modelserve backends`) [auto]."),
    click.option("--task", type=click.Choice(TASKS),
                 help="What the model does: generate, embed (vectors) or rerank [from the model folder, else generate]."),
    click.option("--device", help="auto | cpu | cuda | cuda:0,1 [auto]."),
    click.option("--gpus", type=int, help="How many GPUs (the ones with most free memory) [1]."),
    click.option("--force", is_flag=True, default=None, help="Start even if the memory estimate says it won't fit."),
    click.option("--max-model-len", type=int, help="Context length the engine reserves memory for."),
    click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False), help="Deployment YAML file."),
    click.option("--name", help="Deployment name [from the model]."),
    click.option("--host", help="Address to bind [127.0.0.1]."),
    click.option("--api-key", help="Require 'Authorization: Bearer KEY' on every route but /health (shows in `ps`: "
                                    "prefer $MODELSERVE_API_KEY or --api-key-file) [$MODELSERVE_API_KEY]."),
    click.option("--api-key-file", type=click.Path(exists=True, dir_okay=False),
                 help="Read the API key from this file (the key alone, on one line)."),
    click.option("--timeout", type=float, help="Seconds to wait until the server answers [600]."),
    click.option("--agentscope-config", help="AgentScope model_config.json to merge into [./model_config.json]."),
    click.option("--served-model-name", help="Name clients send as 'model' [from the model]."),
    click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), help="Weights dtype [auto]."),
    click.option("--threads", type=int, help="Engine CPU threads [built-in server: all cores; FastChat: half]."),
    click.option("--python", help="Interpreter that runs the engine [this one]."),
    click.option("--dry-run", is_flag=True, help="Print the plan (argv, env, probes) and start nothing."),
    click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
]
SPEC_KEYS = ("model", "port", "backend", "task", "device", "gpus", "force", "max_model_len", "name", "host", "timeout",
             "served_model_name", "dtype", "threads", "python")  # fmt: skip
# Where a fleet file says what these flags say for one deployment (`up -c FLEET.yaml` refuses them).
FLEET_KEYS = {"port": "gateway.port (members get free ones)", "host": "gateway.host", "api_key": "gateway.api_key",
              "api_key_file": "gateway.api_key", "name": "name",
              "timeout": "deployments[].timeout (a member's start) or policy.start_timeout (a request's wait)"}  # fmt: skip


@main.command()
@apply(UP_OPTIONS)
def up(config_file: str | None, agentscope_config: str | None, api_key: str | None, api_key_file: str | None,
       dry_run: bool, as_json: bool, **flags: Any) -> None:  # fmt: skip
    """Start a model server, wait until it answers, write the AgentScope config.

    \b
    modelserve up -m smollm2-135m -p 8000
    modelserve up -m ./my-model --device cuda --api-key-file ~/.config/modelserve/key --host 0.0.0.0
    modelserve up -c configs/flask-transformers.yaml --port 8001
    modelserve up -c fleet.yaml --dry-run      # every member's plan and the gateway's; starts nothing
    """
    from launcher.core.fleet_spec import is_fleet_file
    from launcher.process import stop_signals

    overrides = {k: flags[k] for k in SPEC_KEYS}
    with stop_signals.raising():  # SIGTERM/SIGHUP stop what was started, as Ctrl-C does
        if config_file and is_fleet_file(config_file):
            given = {k: v for k, v in {**overrides, "api_key": api_key, "api_key_file": api_key_file}.items()
                     if v is not None}  # fmt: skip
            _up_fleet(config_file, given, agentscope_config, dry_run, as_json)
        else:
            _up_one(config_file, {**overrides, "agentscope.config": agentscope_config}, api_key, api_key_file, dry_run,
                    as_json)  # fmt: skip


def _up_one(config_file: str | None, overrides: dict[str, Any], api_key: str | None, api_key_file: str | None,
            dry_run: bool, as_json: bool) -> None:  # fmt: skip
    from launcher.cli import output
    from launcher.lifecycle import prepare, specs
    from launcher.lifecycle import up as starting

    loaded = specs.load_for_up(config_file, overrides, specs.given_api_key(api_key, api_key_file, os.environ))
    if dry_run:
        for note in loaded.notes:
            warn(note)
        prep = prepare.prepare(loaded.deployment, report=report, dry_run=True)
        click.echo(json.dumps(output.plan_json(loaded, prep), indent=2) if as_json else output.plan_text(loaded, prep))
        return
    result = starting.up(loaded, report=report)
    for warning in result.warnings:
        warn(warning)
    click.echo(json.dumps(output.up_json(result), indent=2) if as_json else output.up_text(result))


def _up_fleet(config_file: str, given: dict[str, Any], agentscope_config: str | None, dry_run: bool,
              as_json: bool) -> None:  # fmt: skip
    from launcher.cli import output
    from launcher.core.errors import ConfigError
    from launcher.lifecycle import fleet, fleet_plan, specs

    if given:
        flags = [f"--{k.replace('_', '-')}" for k in given]
        where = [f"--{k.replace('_', '-')}: {FLEET_KEYS.get(k, f'deployments[].{k} (per member)')}" for k in given]
        raise ConfigError(f"{config_file} is a fleet: {', '.join(flags)} set(s) one deployment's value, and a fleet "
                          "has a gateway and several members", "write it in the fleet file: " + "; ".join(where))  # fmt: skip
    if dry_run:
        plan = fleet_plan.dry_run(config_file, agentscope_config=agentscope_config, report=report)
        warnings, key = plan.warnings, plan.fleet.gateway.api_key
        text = json.dumps(output.fleet_plan_json(plan), indent=2) if as_json else output.fleet_plan_text(plan)
    else:
        result = fleet.up_fleet(config_file, report=report, agentscope_config=agentscope_config)
        warnings, key = result.warnings, result.fleet.gateway.api_key
        text = json.dumps(output.fleet_up_json(result), indent=2) if as_json else output.fleet_up_text(result)
    if os.environ.get(specs.API_KEY_ENV, "").strip() not in ("", key):
        warnings = [*warnings, f"{specs.API_KEY_ENV} is not read for a fleet: its key is gateway.api_key in "
                               f"{config_file}"]  # fmt: skip
    for warning in warnings:
        warn(warning)
    click.echo(text)


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
    from launcher.cli import output
    from launcher.lifecycle import down as stopping

    if not names and not all_:
        raise click.UsageError("name a deployment or pass --all")
    results = stopping.down(None if all_ else list(names), forget_config=forget_config, timeout=timeout)
    click.echo(output.down_text(results))


@main.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def restart(name: str, as_json: bool) -> None:
    """Stop a deployment (or fleet) and start it again with the settings it was started with.

    \b
    modelserve restart smollm2-135m
    modelserve restart lab          # a fleet: from its file, read again
    """
    from launcher.cli import output
    from launcher.lifecycle.dashboard import DashboardResult
    from launcher.lifecycle.fleet import FleetUpResult
    from launcher.lifecycle.restart import restart as restarting

    result = restarting(name, report=report)
    for warning in result.warnings:
        warn(warning)
    if isinstance(result, DashboardResult):
        click.echo(json.dumps({"name": name, "url": result.url}) if as_json else f"dashboard ready: {result.url}")
    elif isinstance(result, FleetUpResult):
        click.echo(json.dumps(output.fleet_up_json(result), indent=2) if as_json else output.fleet_up_text(result))
    else:
        click.echo(json.dumps(output.up_json(result), indent=2) if as_json else output.up_text(result))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Versioned JSON envelope.")
@click.option("--no-probe", is_flag=True, help="Do not ask the servers for live health.")
def status(as_json: bool, no_probe: bool) -> None:
    """Show deployments: backend, model, endpoint, pid, uptime, live health, log path."""
    from launcher.cli import output
    from launcher.lifecycle import status as querying

    damaged: list[Path] = []
    rows = querying.status(probe=not no_probe, damaged=damaged)
    if as_json:
        click.echo(json.dumps({"version": JSON_VERSION, "deployments": [asdict(r) for r in rows],
                               "damaged": [str(p) for p in damaged]}, indent=2))  # fmt: skip
    else:
        click.echo(output.status_text(rows))
    for path in damaged:
        warn(f"cannot read {path}: its deployment is not listed (if nothing of it runs, remove {path.parent})")


@main.command()
@click.argument("name")
@click.option("-n", "--lines", default=50, show_default=True, help="How many lines to show.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.option("--process", help="Which process's log (FastChat: controller, worker, api).")
def logs(name: str, lines: int, follow: bool, process: str | None) -> None:
    """Print a deployment's log."""
    from launcher.lifecycle.status import log_path
    from launcher.process import logs as log_files

    path = log_path(name, process)
    if not follow:
        click.echo(log_files.tail(path, lines, max_bytes=max(64 * 1024, lines * 400)))
        return
    for chunk in log_files.follow(path, lines=lines, stop=lambda: False):
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
    from launcher.lifecycle.status import health_of

    result = health_of(target, timeout=timeout)
    click.echo(("healthy: " if result.ok else "unhealthy: ") + result.detail)
    sys.exit(0 if result.ok else 1)
