"""Records of deployments rendered for Kubernetes: ``$MODELSERVE_HOME/k8s/NAME.json``.

`modelserve k8s render` writes one per deployment or fleet so that `modelserve config NAME`
can hand agents the Service URLs. They live apart from ``deployments/``: nothing runs here, so
`status`, `down` and `logs` must not see them. Mode 0600: a record may hold the API key.
"""

from __future__ import annotations

import json
from pathlib import Path

from launcher.core.errors import DeploymentNotFound
from launcher.store import paths
from launcher.store.files import write_atomic
from launcher.store.records import DeploymentRecord, writable

RENDERED = "rendered"  # DeploymentRecord.status of a Kubernetes render


def k8s_dir() -> Path:
    return paths.home() / "k8s"


def record_file(name: str) -> Path:
    return k8s_dir() / f"{name}.json"


def save(record: DeploymentRecord) -> Path:
    target = record_file(record.name)
    with writable(target.parent):
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, record.to_json(), mode=0o600, keep_mode=False)
    return target


def load(name: str) -> DeploymentRecord | None:
    """The render recorded under ``name``; None when there is none."""
    path = record_file(name)
    try:
        return DeploymentRecord.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError) as exc:
        raise DeploymentNotFound(f"the Kubernetes render record {path} is damaged: {exc}",
                                 f"render it again with `modelserve k8s render`, or remove {path}") from None  # fmt: skip
