"""Deployment specs as the commands load them: the core loader plus every registered backend's
options section; what a systemd unit for a spec needs to know about this machine; and a spec or
fleet file handed to the Kubernetes renderer (launcher.k8s)."""

from __future__ import annotations

import shutil
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import version as version_of
from pathlib import Path
from typing import Any

import backends
from launcher import devices, models
from launcher.core import deployment_spec
from launcher.core.deployment_spec import LoadedSpec
from launcher.core.errors import ConfigError
from launcher.core.fleet_spec import is_fleet_file
from launcher.k8s.render import K8sRender, render
from launcher.lifecycle import fleet as fleets
from launcher.store import paths
from launcher.systemd.units import File, UnitInputs, render_unit


def load(config_file: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> LoadedSpec:
    """Defaults < YAML < flags, with backend sections checked by their backends' options models."""
    return deployment_spec.load(config_file, overrides, sections=backends.option_models())


API_KEY_ENV = "MODELSERVE_API_KEY"


@dataclass(frozen=True)
class GivenKey:
    """The API key `up` was handed outside the spec, and how."""

    value: str
    source: str  # "--api-key", "--api-key-file PATH" or "MODELSERVE_API_KEY"
    notes: tuple[str, ...] = ()


def given_api_key(flag: str | None, key_file: str | None, env: Mapping[str, str]) -> GivenKey | None:
    """``--api-key`` or ``--api-key-file`` (never both), else ``$MODELSERVE_API_KEY``; None when
    none is set, so the spec's own ``api_key:`` applies. The flags are the most specific (this
    command), the variable the least (every command of the shell), and the YAML file below both."""
    if flag is not None and key_file is not None:
        raise ConfigError("--api-key and --api-key-file both give the key",
                          "give it once: --api-key-file (or MODELSERVE_API_KEY) keeps it out of `ps` and shell history")  # fmt: skip
    if flag is not None:
        return GivenKey(flag, "--api-key")
    if key_file is not None:
        return _read_key_file(Path(key_file))
    value = env.get(API_KEY_ENV, "").strip()
    return GivenKey(value, API_KEY_ENV) if value else None


def _read_key_file(path: Path) -> GivenKey:
    try:
        text = path.read_text()
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the API key file {path}: {exc}",
                          "point --api-key-file at a readable file that holds the key") from None  # fmt: skip
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 1 or any(c.isspace() for c in lines[0]):
        raise ConfigError(f"the API key file {path} holds {len(lines)} non-empty lines" if len(lines) != 1 else
                          f"the API key in {path} contains whitespace",
                          f"write the key alone on one line: printf '%s\\n' KEY > {path}; chmod 600 {path}")  # fmt: skip
    notes: tuple[str, ...] = ()
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        notes = (f"{path} can be read by other users (mode {stat.S_IMODE(mode):o}): chmod 600 {path}",)
    return GivenKey(lines[0], f"--api-key-file {path}", notes)


def load_for_up(config_file: str | Path | None, overrides: Mapping[str, Any], key: GivenKey | None) -> LoadedSpec:
    """:func:`load` with the key `up` was given over the spec's own, and its source named."""
    if key is None:
        return load(config_file, overrides)
    loaded = load(config_file, {**overrides, "api_key": key.value})
    loaded.sources["api_key"] = key.source
    loaded.notes.extend(key.notes)
    if key.source == API_KEY_ENV and config_file is not None:
        doc = deployment_spec.read_yaml(Path(config_file))
        written = doc.data.get("api_key")
        if written and written != key.value:
            loaded.notes.append(f"{API_KEY_ENV} replaces the api_key at {doc.where(('api_key',))} (unset the "
                                "variable to use the file's)")  # fmt: skip
    return loaded


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
