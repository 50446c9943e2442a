"""Loading a Deployment: ``configs/defaults.yaml`` < the user's YAML file < command-line flags.

``load()`` returns one validated :class:`Deployment` plus, for every top-level value, where it
came from (``"command line"``, ``"prod.yaml:7"``, ``"defaults.yaml:3"``), so a summary or an
error can say why a value is what it is. Unknown keys and wrong types are rejected with
``FILE:LINE key: message``.

A top-level key named after a backend (``vllm:``, ``fastchat:``) is that backend's own section,
checked by the options model the caller passes in ``sections`` (core knows no backend). A
backend setting written at the top level, as round one's files did (``conv_template: ...``), is
read into its backend's section with a note saying where it belongs now.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from launcher.core import resources
from launcher.core.deployment import AgentScopeSettings, Deployment, RaySettings
from launcher.core.errors import ConfigError

CLI = "command line"
Loc = tuple[str, ...]


@dataclass
class LoadedSpec:
    deployment: Deployment
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. a backend key found at the top level

    def source(self, key: str) -> str:
        return self.sources.get(key, "built-in default")


# ---- YAML with line numbers ----------------------------------------------------------------


@dataclass
class YamlDoc:
    path: Path
    data: dict[str, Any]
    lines: dict[Loc, int]  # key path -> 1-based line of the key

    def where(self, path: Loc) -> str | None:
        while path:
            if path in self.lines:
                return f"{self.path}:{self.lines[path]}"
            path = path[:-1]
        return None


def read_yaml(path: Path) -> YamlDoc:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", "check the path given to -c") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{line}: not valid YAML: {exc.problem}", "fix the YAML syntax there") from exc
    if node is None:
        return YamlDoc(path, {}, {})
    if not isinstance(node, yaml.MappingNode):
        raise ConfigError(
            f"{path}:{node.start_mark.line + 1}: the file must be a mapping of settings", "see configs/*.yaml"
        )
    lines: dict[Loc, int] = {}
    _index(node, (), lines, path)
    data = yaml.safe_load(text) or {}
    return YamlDoc(path, data, lines)


def sub_document(doc: YamlDoc, prefix: Loc, data: dict[str, Any]) -> YamlDoc:
    """The part of ``doc`` under ``prefix`` (a fleet member), keeping its line numbers."""
    n = len(prefix)
    return YamlDoc(doc.path, data, {k[n:]: line for k, line in doc.lines.items() if k[:n] == prefix and len(k) > n})


def _index(node: yaml.Node, prefix: Loc, out: dict[Loc, int], path: Path) -> None:
    if isinstance(node, yaml.SequenceNode):  # list items are keyed by position: ("deployments", "0", ...)
        for i, item in enumerate(node.value):
            out[(*prefix, str(i))] = item.start_mark.line + 1
            _index(item, (*prefix, str(i)), out, path)
        return
    if not isinstance(node, yaml.MappingNode):
        return
    for key_node, value_node in node.value:
        key = (*prefix, str(key_node.value))
        if key in out:
            raise ConfigError(
                f"{path}:{key_node.start_mark.line + 1} {'.'.join(key)}: duplicate key "
                f"(first at line {out[key]})",
                "keep one of them",
            )
        out[key] = key_node.start_mark.line + 1
        _index(value_node, key, out, path)


# ---- layers --------------------------------------------------------------------------------


@dataclass
class _Layer:
    kind: str  # defaults | file | cli
    doc: YamlDoc | None
    raw: dict[str, Any]  # as written: what error locations are looked up in


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _cli_layer(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Only the flags the user gave (None: not given); dotted keys (``agentscope.config``) nest."""
    cli: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        target = cli
        *parents, last = key.split(".")
        for p in parents:
            target = target.setdefault(p, {})
        target[last] = value
    return cli


class _Sections:
    """Moves backend sections (and round-one top-level backend keys) into ``options``."""

    def __init__(self, models: Mapping[str, type[BaseModel]]) -> None:
        self.models = dict(models)
        self.moved: set[tuple[str, str]] = set()  # (section, key) read from a top-level key
        self.notes: list[str] = []

    def split(self, raw: dict[str, Any], where: str) -> dict[str, Any]:
        shared: dict[str, Any] = {}
        options: dict[str, Any] = {}
        for key, value in raw.items():
            owners = [s for s, m in self.models.items() if key in m.model_fields]
            if key == "options":
                example = f", e.g. `{next(iter(self.models))}:`" if self.models else ""
                raise ConfigError(f"{where} options: unknown key",
                                  f"a backend's settings go in a section named after it{example}")  # fmt: skip
            if key in self.models:
                value = {} if value is None else value  # `vllm:` with nothing under it
                options[key] = value if not isinstance(value, dict) else {**options.get(key, {}), **value}
            elif key not in Deployment.model_fields and owners:
                for section in owners:
                    options.setdefault(section, {})[key] = value
                    self.moved.add((section, key))
                self.notes.append(f"{key}: a setting of {' and '.join(owners)}; write it under "
                                  f"`{owners[0]}:` (read it from the top level for now)")  # fmt: skip
            else:
                shared[key] = value
        if options:
            shared["options"] = options
        return shared

    def yaml_loc(self, loc: Loc) -> Loc:
        """Where a validation error's location is written in the YAML."""
        if len(loc) >= 2 and loc[0] == "options":
            section, rest = loc[1], loc[2:]
            if rest and (section, rest[0]) in self.moved:
                return rest
            return (section, *rest)
        return loc

    def validate(self, dep: Deployment) -> list[tuple[Loc, dict[str, Any]]]:
        errors: list[tuple[Loc, dict[str, Any]]] = []
        for section, values in dep.options.items():
            try:
                self.models[section].model_validate(values)
            except ValidationError as exc:
                errors += [(self.yaml_loc(("options", section, *map(str, e["loc"]))), dict(e)) for e in exc.errors()]
        return errors


def load(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    defaults_file: Path | None = None,
    sections: Mapping[str, type[BaseModel]] | None = None,
    document: YamlDoc | None = None,
) -> LoadedSpec:
    """Build a validated Deployment from defaults, an optional YAML file and CLI overrides.

    ``sections``: backend name -> its options model (``backends.option_models()``).
    ``document``: an already read YAML mapping (a fleet member) instead of ``config_file``.
    """
    layers: list[_Layer] = []
    defaults = read_yaml(defaults_file or resources.config_path("defaults.yaml"))
    layers.append(_Layer("defaults", defaults, defaults.data))
    if config_file is not None:
        document = read_yaml(Path(config_file))
    if document is not None:
        layers.append(_Layer("file", document, document.data))
    layers.append(_Layer("cli", None, _cli_layer(overrides)))

    secs = _Sections(sections or {})
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for layer in layers:
        where = CLI + ":" if layer.doc is None else (layer.doc.where(("options",)) or str(layer.doc.path))
        merged = _deep_merge(merged, secs.split(layer.raw, where))
        for key in layer.raw:
            sources[key] = CLI if layer.kind == "cli" else (layer.doc.where((key,)) if layer.doc else None) or "?"

    try:
        deployment = Deployment.model_validate(merged)
    except ValidationError as exc:
        found = [(secs.yaml_loc(tuple(map(str, e["loc"]))), dict(e)) for e in exc.errors()]
        raise ConfigError(_format_errors(found, layers, secs), _hint(secs)) from None
    section_errors = secs.validate(deployment)
    if section_errors:
        raise ConfigError(_format_errors(section_errors, layers, secs), _hint(secs)) from None
    return LoadedSpec(deployment, sources, secs.notes)


# ---- error messages ------------------------------------------------------------------------


def _format_errors(errors: list[tuple[Loc, dict[str, Any]]], layers: list[_Layer], secs: _Sections) -> str:
    out: list[tuple[int, str]] = []
    for loc, err in errors:
        dotted = ".".join(loc) or "(top level)"
        where = _origin(loc, layers)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + _suggest(loc, secs)
        elif err["type"] == "missing" and loc == ("model",):
            msg = "required, but not given (use -m/--model or put it in the YAML file)"
        line = re.search(r":(\d+)$", where)
        out.append((int(line.group(1)) if line else 0, f"{where} {dotted}: {msg}" if where else f"{dotted}: {msg}"))
    return "invalid deployment spec:\n  " + "\n  ".join(text for _, text in sorted(out))


def _origin(loc: Loc, layers: list[_Layer]) -> str:
    # The value that failed came from the last layer that set it.
    for layer in reversed(layers):
        node: Any = layer.raw
        for part in loc:
            if not (isinstance(node, dict) and part in node):
                break
            node = node[part]
        else:
            if loc:
                if layer.doc is None:
                    return "command line:"
                return layer.doc.where(loc) or str(layer.doc.path)
    return ""


def _suggest(loc: Loc, secs: _Sections) -> str:
    if len(loc) == 1:
        known = [*Deployment.model_fields, *secs.models]
    elif len(loc) == 2 and loc[0] in ("agentscope", "ray"):
        known = list((AgentScopeSettings if loc[0] == "agentscope" else RaySettings).model_fields)
    elif len(loc) == 2 and loc[0] in secs.models:
        known = list(secs.models[loc[0]].model_fields)
    else:
        return ""
    close = difflib.get_close_matches(loc[-1], [k for k in known if k != "options"], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _hint(secs: _Sections) -> str:
    fields = ", ".join(sorted(k for k in Deployment.model_fields if k != "options"))
    extra = f"; backend sections: {', '.join(sorted(secs.models))}" if secs.models else ""
    return f"fix the values above; known keys: {fields}{extra}"
