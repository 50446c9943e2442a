"""Which model Ollama should serve for ``-m``: an Ollama tag, a Hugging Face ID mapped through
configs/ollama-tags.yaml, a built-in alias, or a local GGUF file to import."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from launcher.core import resources
from launcher.core.errors import ConfigError, ModelNotFound

TAGS_FILE = "ollama-tags.yaml"
# [host/][namespace/]model[:tag] as Ollama spells names (hf.co/ORG/REPO:QUANT included).
TAG_RE = re.compile(r"^[A-Za-z0-9][\w.-]*(?:/[A-Za-z0-9][\w.-]*){0,2}(?::\w[\w.-]{0,127})?$")
HF_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class TagTable:
    """configs/ollama-tags.yaml: Hugging Face ID -> Ollama tag, and built-in alias -> tag."""

    models: Mapping[str, str] = field(default_factory=dict)
    aliases: Mapping[str, str] = field(default_factory=dict)
    source: str = TAGS_FILE

    def lookup(self, model_id: str) -> str | None:
        wanted = model_id.lower()
        return next((tag for hf_id, tag in self.models.items() if hf_id.lower() == wanted), None)


def load_tag_table(path: Path | None = None) -> TagTable:
    path = path or resources.config_path(TAGS_FILE)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the Ollama tag table {path}: {exc}", f"fix or restore {path}") from None
    tables: dict[str, dict[str, str]] = {}
    for key in ("models", "aliases"):
        section = data.get(key) or {}
        if not isinstance(section, dict) or not all(isinstance(v, str) for v in section.values()):
            raise ConfigError(f"{path}: {key} must map names to Ollama tags (strings)", f"fix {key} in {path}")
        tables[key] = {str(k): v for k, v in section.items()}
    return TagTable(tables["models"], tables["aliases"], str(path))


@dataclass(frozen=True)
class ModelSource:
    """What Ollama should serve: ``tag`` (pulled when missing), or a local ``gguf`` file created
    under the name ``tag``."""

    tag: str
    gguf: Path | None = None
    description: str = ""


def gguf_tag(path: Path) -> str:
    """An Ollama model name for a GGUF file: its stem, lower case, only [a-z0-9._-]."""
    stem = re.sub(r"[^a-z0-9._-]+", "-", path.stem.lower()).strip("-._")
    return stem or "model"


def model_source(reference: str, table: TagTable | None = None) -> ModelSource:
    """Map ``-m`` to what Ollama serves. Raises ModelNotFound with the fix when it cannot."""
    path = Path(reference).expanduser()
    looks_like_path = reference.startswith(("/", "./", "../", "~")) or reference.lower().endswith(".gguf")
    if path.is_file():
        with path.open("rb") as fh:
            magic = fh.read(4)
        if magic != GGUF_MAGIC:
            raise ModelNotFound(
                f"{reference} is a file but not a GGUF model (it does not start with 'GGUF')",
                "Ollama imports GGUF files: pass a .gguf file, or an Ollama tag such as qwen2.5:0.5b",
            )
        resolved = path.resolve()
        tag = gguf_tag(resolved)
        return ModelSource(tag, resolved, f"local GGUF {resolved}; created in Ollama as {tag}")
    if path.is_dir():
        raise ModelNotFound(
            f"{reference} is a folder; the ollama backend serves Ollama tags and GGUF files",
            "serve a Transformers folder with -b flask-transformers (or vllm), or pass a .gguf file or an Ollama tag",
        )
    if looks_like_path:
        raise ModelNotFound(
            f"model {reference!r} does not exist (resolved from {os.getcwd()})",
            "check the path of the GGUF file, or pass an Ollama tag such as qwen2.5:0.5b",
        )
    table = table if table is not None else load_tag_table()
    if reference in table.aliases:
        tag = table.aliases[reference]
        return ModelSource(tag, None, f"built-in alias {reference} -> Ollama tag {tag} ({TAGS_FILE})")
    if ":" in reference or reference.startswith(("hf.co/", "huggingface.co/")):
        if not TAG_RE.match(reference) and not reference.startswith(("hf.co/", "huggingface.co/")):
            raise ModelNotFound(f"{reference!r} is not a valid Ollama model name", "use NAME[:TAG], e.g. qwen2.5:0.5b")
        return ModelSource(reference, None, f"Ollama tag {reference}")
    if HF_ID_RE.match(reference):
        mapped = table.lookup(reference)
        if mapped is None:
            raise ModelNotFound(
                f"{reference!r} looks like a Hugging Face ID; Ollama cannot serve those, and {table.source} "
                "maps no Ollama tag to it",
                "pass an Ollama tag instead (e.g. -m qwen2.5:0.5b; see https://ollama.com/library; a user's model "
                "as -m NAMESPACE/MODEL:TAG), or a local GGUF file (-m ./model.gguf), or add the ID to "
                f"{table.source}",
            )
        return ModelSource(mapped, None, f"Hugging Face {reference} -> Ollama tag {mapped} ({TAGS_FILE})")
    if TAG_RE.match(reference):
        return ModelSource(reference, None, f"Ollama tag {reference}")
    raise ModelNotFound(f"{reference!r} is not an Ollama model name, a GGUF file or a known Hugging Face ID",
                        "use an Ollama tag such as qwen2.5:0.5b, or -m ./model.gguf")  # fmt: skip


def canonical(name: str) -> str:
    """Ollama's short form with the tag made explicit: ``llama2`` -> ``llama2:latest``."""
    name = name.strip().lower()
    for prefix in ("registry.ollama.ai/library/", "library/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name if ":" in name.rsplit("/", 1)[-1] else name + ":latest"


def has_model(names: list[str], wanted: str) -> bool:
    return canonical(wanted) in {canonical(n) for n in names}
