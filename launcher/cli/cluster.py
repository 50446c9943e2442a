"""`modelserve ray head|worker|stop|check`: the Ray cluster a deployment's `ray:` section names."""

from __future__ import annotations

import click

from launcher.cli.root import main, report, warn

SPEC = click.option("-c", "--config", "config_file", required=True, type=click.Path(dir_okay=False),
                    help="Deployment YAML file with a ray: section.")  # fmt: skip
START = click.option("--start", is_flag=True, help="Run the command here instead of printing it.")


@main.group()
def ray() -> None:
    """The Ray cluster vLLM spreads a model over (YAML `ray: {address: HOST:PORT, nodes: N}`).

    Every node gives the cluster `gpus` GPUs: tensor parallel within a node, pipeline parallel
    across nodes. Ray runs from the engine's interpreter (python:, else the managed vLLM env).

    \b
    modelserve ray head -c llama70b.yaml --start     # on the head node (also a GPU node)
    modelserve ray worker -c llama70b.yaml --start   # on each other node
    modelserve ray check -c llama70b.yaml            # nodes and GPUs, read from the cluster
    modelserve up -c llama70b.yaml                   # on the head: vLLM across the nodes
    """


def _role(config_file: str, role: str, start: bool) -> None:
    from launcher.lifecycle import ray_cluster, specs

    dep = specs.load(config_file).deployment
    found = ray_cluster.command(dep, role, report=None if start else warn)  # type: ignore[arg-type]
    if not start:
        click.echo(found.text())
        return
    report(f"running: {found.text()}")
    click.echo(ray_cluster.run(found).output)


@ray.command()
@SPEC
@START
def head(config_file: str, start: bool) -> None:
    """The `ray start --head` command for this node (port from ray.address, default 6379)."""
    _role(config_file, "head", start)


@ray.command()
@SPEC
@START
def worker(config_file: str, start: bool) -> None:
    """The `ray start --address HEAD` command that joins another node to the head at ray.address."""
    _role(config_file, "worker", start)


@ray.command()
@SPEC
@START
def stop(config_file: str, start: bool) -> None:
    """`ray stop`: every Ray process of this machine (Ray's own rule), whichever cluster it serves."""
    _role(config_file, "stop", start)


@ray.command()
@SPEC
def check(config_file: str) -> None:
    """Read the cluster's nodes and GPUs through Ray and say whether the layout fits (exit 12 if not)."""
    from launcher.core.errors import DeviceError
    from launcher.lifecycle import ray_cluster, specs

    dep = specs.load(config_file).deployment
    found = ray_cluster.check(dep, ray_cluster.engine_python(dep))
    for node in found.cluster.nodes:
        click.echo(f"node {node.node_id[:12]}  {node.ip:<15} {'alive' if node.alive else 'dead '}  "
                   f"{node.gpus} GPU(s){' ' + node.accelerator if node.accelerator else ''}  {node.cpus:g} CPU(s)")  # fmt: skip
    if not found.fit.fits:
        raise DeviceError(found.fit.message, found.fit.hint)
    click.echo(found.fit.message)
