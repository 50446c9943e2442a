"""KubeRay's CRD schemas (vendored in tests/fixtures/kuberay/, see its README), loaded strict,
and a validator for rendered manifests.

Strict: every object schema that lists ``properties`` and says nothing about other keys gets
``additionalProperties: false``, as kubeconform's -strict does. The API server would prune an
unknown field without a word; here a misspelt one fails.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator

VENDORED = Path(__file__).parent / "fixtures" / "kuberay"
FILES = {"RayCluster": "raycluster-v1.json", "RayService": "rayservice-v1.json"}


def strict(node: Any) -> Any:
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict(v) for k, v in node.items()}
    if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@cache
def validator(kind: str) -> Draft7Validator:
    schema = strict(json.loads((VENDORED / FILES[kind]).read_text()))
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def errors(manifest: dict[str, Any]) -> list[str]:
    """Every schema violation of ``manifest`` as ``path: message`` (empty: valid)."""
    if manifest.get("apiVersion") != "ray.io/v1" or manifest.get("kind") not in FILES:
        return [f"not a ray.io/v1 RayCluster or RayService: {manifest.get('apiVersion')} {manifest.get('kind')}"]
    found = validator(manifest["kind"]).iter_errors(manifest)
    return sorted(f"{'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in found)
