"""Model names and the model store, laid out like Ollama's: manifests/<host>/<namespace>/<model>/<tag>
(JSON) and blobs/sha256-<hex>.

Built from Ollama docs/api.md: model names are [host/][namespace/]model[:tag] with "latest" as the
default tag; GET /api/tags lists {name, model, modified_at, size, digest, details{parent_model,
format, family, families, parameter_size, quantization_level}}.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.ollama_standin.registry import DEFAULT_HOST, DEFAULT_NAMESPACE, MT_CONFIG, MT_MANIFEST


def parse_name(name: str) -> tuple[str, str, str, str]:
    """[host/][namespace/]model[:tag] -> (host, namespace, model, tag), lower-cased."""
    name = name.strip().lower()
    tag = "latest"
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    parts = name.split("/")
    if len(parts) == 1:
        return DEFAULT_HOST, DEFAULT_NAMESPACE, parts[0], tag
    if len(parts) == 2:
        return DEFAULT_HOST, parts[0], parts[1], tag
    return parts[-3], parts[-2], parts[-1], tag


def display_name(host: str, namespace: str, model: str, tag: str) -> str:
    if host == DEFAULT_HOST and namespace == DEFAULT_NAMESPACE:
        return f"{model}:{tag}"
    if host == DEFAULT_HOST:
        return f"{namespace}/{model}:{tag}"
    return f"{host}/{namespace}/{model}:{tag}"


def valid_name(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*){0,2}(:\w[\w.-]{0,127})?", name.strip()))


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.RLock()
        (root / "blobs").mkdir(parents=True, exist_ok=True)
        (root / "manifests").mkdir(parents=True, exist_ok=True)
        self.loaded: dict[str, float] = {}  # display name -> expiry (epoch seconds)

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / digest.replace(":", "-")

    def manifest_path(self, name: str) -> Path:
        host, namespace, model, tag = parse_name(name)
        return self.root / "manifests" / host / namespace / model / tag

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            manifest = json.loads(self.manifest_path(name).read_text())
        except (OSError, ValueError):
            return None
        return manifest if isinstance(manifest, dict) else None

    def put(self, name: str, manifest: dict[str, Any]) -> None:
        path = self.manifest_path(name)
        with self.lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(manifest))
            os.replace(tmp, path)

    def delete(self, name: str) -> bool:
        with self.lock:
            try:
                self.manifest_path(name).unlink()
                return True
            except FileNotFoundError:
                return False

    def write_blob(self, data: bytes) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self.blob_path(digest)
        if not path.exists():
            path.write_bytes(data)
        return digest, len(data)

    def names(self) -> list[tuple[str, Path]]:
        out = []
        base = self.root / "manifests"
        for path in sorted(base.glob("*/*/*/*")):
            if path.is_file() and not path.name.endswith(".tmp"):
                host, namespace, model, tag = path.relative_to(base).parts
                out.append((display_name(host, namespace, model, tag), path))
        return out

    def config(self, manifest: dict[str, Any]) -> dict[str, Any]:
        try:
            cfg = json.loads(self.blob_path(manifest["config"]["digest"]).read_text())
        except (OSError, ValueError, KeyError):
            return {}
        return cfg if isinstance(cfg, dict) else {}

    def entry(self, name: str, path: Path) -> dict[str, Any]:
        raw = path.read_bytes()
        manifest = json.loads(raw)
        cfg = self.config(manifest)
        modified = datetime.fromtimestamp(path.stat().st_mtime).astimezone().isoformat()
        return {
            "name": name, "model": name, "modified_at": modified,
            "size": sum(int(layer["size"]) for layer in manifest.get("layers", [])),
            "digest": hashlib.sha256(raw).hexdigest(),
            "details": details(cfg),
        }

    def layer_text(self, manifest: dict[str, Any], media_type: str) -> str:
        for layer in manifest.get("layers", []):
            if layer["mediaType"] == media_type:
                with contextlib.suppress(OSError):
                    return self.blob_path(layer["digest"]).read_text()
        return ""


def details(cfg: dict[str, Any]) -> dict[str, Any]:
    return {"parent_model": cfg.get("parent_model", ""), "format": cfg.get("model_format", "gguf"),
            "family": cfg.get("model_family", ""), "families": cfg.get("model_families"),
            "parameter_size": cfg.get("model_type", ""), "quantization_level": cfg.get("file_type", "")}


def fake_digest(*parts: str) -> str:
    return "sha256:" + hashlib.sha256("\0".join(parts).encode()).hexdigest()


def build_manifest(store: Store, layers: list[dict[str, Any]], cfg: dict[str, Any]) -> dict[str, Any]:
    config_digest, config_size = store.write_blob(json.dumps(cfg, sort_keys=True).encode())
    return {"schemaVersion": 2, "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": config_digest, "size": config_size}, "layers": layers}
