"""The one refusal type of the translators, and pydantic's ValidationError worded as a 400 that
names the field by its path in the body (``messages[0].content[1].type``)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError


class SurfaceError(Exception):
    """A request a surface refuses (or an upstream answer it cannot translate): the HTTP status,
    a message that names the fix, and the field at fault. Each surface writes it in its own
    error shape (``anthropic.error_body``, ``responses.error_body``)."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


def refuse(why: str, *, at: str = "") -> PydanticCustomError:
    """A validator's refusal of something not served; ``at``: where inside the validated value."""
    return PydanticCustomError("refused", "{why}", {"why": why, "at": at})


def field_path(loc: Sequence[str | int], tags: frozenset[str] = frozenset()) -> str:
    """``("messages", 0, "content", 1, "text")`` -> ``messages[0].content[1].text``; the names of
    union members pydantic adds (``list[...]``, a discriminator's ``tags``) are left out."""
    parts = [p for i, p in enumerate(loc) if not (isinstance(p, str) and ("[" in p or (p in tags and i < len(loc) - 1)))]
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _short(value: object, limit: int = 60) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_EXPECTED = {
    "int_type": "an integer", "float_type": "a number", "bool_type": "true or false", "string_type": "a string",
    "dict_type": "an object", "model_type": "an object", "list_type": "an array", "finite_number": "a finite number",
    "model_attributes_type": "an object",
}  # fmt: skip


def _problem(error: Mapping[str, Any]) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "missing":
        return "is required"
    if kind in _EXPECTED:
        return f"must be {_EXPECTED[kind]}, got {_short(error['input'])}"
    if kind in ("literal_error", "union_tag_invalid"):
        expected = ctx.get("expected") or ctx.get("expected_tags")
        return f"must be {expected}, got {_short(error['input'])}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bound = {"greater_than": "> {gt}", "greater_than_equal": ">= {ge}", "less_than": "< {lt}",
                 "less_than_equal": "<= {le}"}[kind].format(**ctx)  # fmt: skip
        return f"must be {bound}, got {_short(error['input'])}"
    if kind == "too_short":
        return "must not be empty"
    return str(error["msg"]).removeprefix("Value error, ")


def from_validation(exc: ValidationError, *, route: str, known: Sequence[str],
                    tags: frozenset[str] = frozenset()) -> SurfaceError:  # fmt: skip
    """The 400 for the first problem: an unknown key first (usually a typo that explains the rest)."""
    errors = exc.errors(include_url=False)
    unknown = sorted(field_path(e["loc"], tags) for e in errors if e["type"] == "extra_forbidden")
    if unknown:
        key = unknown[0]
        where = f"field {key!r} for {route}" if "." not in key and "[" not in key else f"field {key!r}"
        hint = f"; known fields: {', '.join(sorted(known))}" if where.endswith(route) else "; leave it out"
        return SurfaceError(400, f"unsupported {where}{hint}", param=key)
    first = errors[0]
    path = field_path(first["loc"], tags)
    if first["type"] == "refused":
        ctx = first.get("ctx") or {}
        path = ".".join(p for p in (path, str(ctx.get("at", ""))) if p).replace(".[", "[")
        return SurfaceError(400, f"{path}: {ctx.get('why')}" if path else str(ctx.get("why")), param=path or None)
    problem = _problem(first)
    return SurfaceError(400, f"{path} {problem}" if path else problem, param=path or None)


Model = TypeVar("Model", bound=BaseModel)


def validate(model: type[Model], body: Mapping[str, Any], *, route: str, tags: frozenset[str] = frozenset()) -> Model:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise from_validation(exc, route=route, known=list(model.model_fields), tags=tags) from None
