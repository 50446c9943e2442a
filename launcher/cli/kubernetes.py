"""`modelserve k8s render`: Kubernetes manifests for a deployment or a fleet file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from launcher.cli.root import main, report

if TYPE_CHECKING:
    from launcher.core.rendered_file import File


@main.group()
def k8s() -> None:
    """Kubernetes manifests that run deployments (README: Scaling out).

    \b
    modelserve k8s render -c deployment.yaml -o k8s/
    modelserve k8s render -c fleet.yaml -o k8s/ --namespace models --kustomize
    modelserve k8s render -c deployment.yaml | kubectl apply -f -
    modelserve config NAME -f agentscope      # the agent config at the Service's URL
    """


@k8s.command("render")
@click.argument("name", required=False)
@click.option("-c", "--config", "config_file", type=click.Path(dir_okay=False), help="Deployment or fleet YAML file.")
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), help="Write the manifests into "
              "this folder (Secrets 0600) instead of printing one YAML stream.")  # fmt: skip
@click.option("-n", "--namespace", default="default", show_default=True, help="Namespace of every object (and of "
              "the Service URLs agents get).")  # fmt: skip
@click.option("--image", "images", multiple=True, metavar="[BACKEND=]IMAGE", help="Container image for every "
              "backend, or for one [vLLM: vllm/vllm-openai at the pinned version; built-in server: modelserve:VERSION].")  # fmt: skip
@click.option("--kustomize", is_flag=True, help="Also write kustomization.yaml (with -o).")
@click.option("--ray-kind", type=click.Choice(["RayCluster", "RayService"]), default="RayCluster", show_default=True,
              help="A spec with ray: becomes this KubeRay kind.")  # fmt: skip
def render(name: str | None, config_file: str | None, output: Path | None, namespace: str, images: tuple[str, ...],
           kustomize: bool, ray_kind: str) -> None:  # fmt: skip
    """Print (or write to -o DIR) a Deployment, Service, model claim and API-key Secret per
    deployment or fleet member, and the agent config as a ConfigMap at the Services' URLs.

    \b
    modelserve k8s render -c llama2.yaml -o k8s/ --namespace models
    modelserve k8s render -c llama2.yaml --image vllm=registry.local/vllm-openai:v0.33.0
    """
    from launcher.k8s.manifests import as_stream
    from launcher.k8s.render import remember
    from launcher.lifecycle import specs

    if bool(name) == bool(config_file):
        raise click.UsageError("give a deployment NAME (a NAME.yaml in the config folders) or -c FILE, not both")
    if kustomize and output is None:
        raise click.UsageError("--kustomize writes kustomization.yaml beside the manifests: pass -o DIR too")
    path = specs.find(name, config_file)
    result = specs.k8s_render(path, namespace=namespace, images=_images(images), kustomize=kustomize,
                              source=config_file or str(path), ray_kind=ray_kind)  # fmt: skip
    for note in result.notes:
        click.secho(f"note: {note}", fg="yellow", err=True)
    if output is None:
        click.echo(as_stream(result.files), nl=False)
    else:
        _write(result.files, output)
    remember(result)
    report(f"agent config: modelserve config {result.record.name} -f agentscope (the Services' URLs)")


def _images(given: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in given:
        backend, sep, image = item.partition("=")
        # An image reference has no '=': BACKEND=IMAGE names one backend, a bare IMAGE all of them.
        out[backend if sep else "*"] = image if sep else item
    return out


def _write(files: list[File], folder: Path) -> None:
    from launcher.store.files import write_atomic

    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        write_atomic(folder / f.name, f.content, mode=f.mode, keep_mode=False)
        click.echo(f"wrote {folder / f.name}")
    flag = "-k" if any(f.name == "kustomization.yaml" for f in files) else "-f"
    click.echo(f"apply: kubectl apply {flag} {folder}")
