"""Deployment specs as the commands load them: the core loader plus every registered backend's
options section; what a systemd unit for a spec needs to know about this machine; and a spec or
fleet file handed to the Kubernetes renderer (launcher.k8s)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from importlib.metadata import version as version_of
from pathlib import Path
from typing import Any

import backends
from launcher import devices, models
from launcher.core import deployment_spec
from launcher.core.deployment_spec import LoadedSpec
from launcher.core.fleet_spec import is_fleet_file
from launcher.k8s.render import K8sRender, render
from launcher.lifecycle import fleet as fleets
from launcher.store import paths
from launcher.systemd.units import File, UnitInputs, render_unit


def load(config_file: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> LoadedSpec:
    """Defaults < YAML < flags, with backend sections checked by their backends' options models."""
    return deployment_spec.load(config_file, overrides, sections=backends.option_models())


def find(name: str | None, config_file: str | None) -> Path:
    """The spec a command names: ``-c FILE``, else NAME.yaml in the config folders."""
    return Path(config_file).absolute() if config_file else paths.find_deployment_file(name or "").absolute()


def modelserve_executable() -> str:
    beside = Path(sys.executable).parent / "modelserve"
    return str(beside) if beside.exists() else (shutil.which("modelserve") or str(Path(sys.argv[0]).absolute()))


def systemd_unit(path: Path, *, user_unit: bool, run_as: str | None) -> File:
    """The unit that runs the spec at ``path`` with `modelserve run`."""
    dep = load(path).deployment
    gpu = dep.device.startswith("cuda") or (dep.device == "auto" and bool(devices.discover()))
    cuda = dep.device.split(":", 1)[1] if dep.device.startswith("cuda:") else None
    try:
        model_path = models.resolve(dep.model, prepare=False).path
    except Exception:  # a model that is not here yet is the unit's problem at start, not now
        model_path = None
    inputs = UnitInputs(
        spec_path=path,
        exe=modelserve_executable(),
        state_dir=paths.home() if user_unit else Path("/var/lib/modelserve"),
        cache_dir=paths.cache() if user_unit else Path("/var/cache/modelserve"),
        user=run_as,
        user_unit=user_unit,
        gpu=gpu,
        cuda_visible_devices=cuda,
        model_path=model_path,
        python=dep.python,
        version=version_of("modelserve"),
    )
    return render_unit(dep, inputs)


def k8s_render(path: str | Path, *, namespace: str = "default", images: Mapping[str, str] | None = None,
               kustomize: bool = False, source: str | None = None, version: str | None = None,
               ray_kind: str = "RayCluster") -> K8sRender:  # fmt: skip
    """`modelserve k8s render`: the deployment or fleet file at ``path`` as manifests (writes nothing)."""
    loaded = fleets.load(path) if is_fleet_file(path) else load(path).deployment
    return render(loaded, source=source or str(path), version=version or version_of("modelserve"),
                  namespace=namespace, images=images, kustomize=kustomize, ray_kind=ray_kind)  # fmt: skip
