"""Which tool-call format a model writes: its family, found from its chat template through
configs/tool-families.yaml (the one table the built-in server's and vLLM's plans both read)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from launcher.core import resources
from launcher.core.errors import ConfigError

TABLE = "tool-families.yaml"


@dataclass(frozen=True)
class ToolFamily:
    name: str
    about: str
    markers: tuple[str, ...]
    builtin: str  # the built-in server's parser
    vllm: str  # vLLM's --tool-call-parser


@dataclass(frozen=True)
class FamilyTable:
    families: tuple[ToolFamily, ...]
    vllm_fallback: str

    def detect(self, template: str | None) -> ToolFamily | None:
        if not template:
            return None
        return next((f for f in self.families if all(m in template for m in f.markers)), None)


def load_table(path: Path | None = None) -> FamilyTable:
    path = path or resources.config_path(TABLE)
    try:
        data = yaml.safe_load(path.read_text()) or {}
        families = tuple(
            ToolFamily(str(f["name"]), str(f.get("about", "")), tuple(str(m) for m in f["markers"]),
                       str(f["builtin"]), str(f["vllm"]))
            for f in data.get("families") or []
        )  # fmt: skip
        return FamilyTable(families, str(data["vllm_fallback"]))
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read the tool family table {path}: {exc}", f"fix or restore {path}") from None


def chat_template(model_dir: str | None) -> str | None:
    """The chat template a model folder ships (chat_template.jinja, or tokenizer_config.json's)."""
    if not model_dir:
        return None
    folder = Path(model_dir)
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text()
    cfg = folder / "tokenizer_config.json"
    if cfg.is_file():
        try:
            value = json.loads(cfg.read_text()).get("chat_template")
        except ValueError:
            return None
        if isinstance(value, str):
            return value
        if isinstance(value, list):  # [{"name": "default", "template": "..."}, ...]
            for item in value:
                if isinstance(item, dict) and item.get("name") == "default":
                    return str(item.get("template", ""))
    return None


def family_of(model_dir: str | None, table: FamilyTable | None = None) -> ToolFamily | None:
    return (table or load_table()).detect(chat_template(model_dir))
