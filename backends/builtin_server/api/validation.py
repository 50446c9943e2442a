"""From pydantic's ValidationError to the one 400 that names the field, and the helpers that word it.

A message names the field by its path in the body (``messages[0].role``), says what was expected
and what came instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from backends.builtin_server.errors import ApiError

Loc = tuple[str | int, ...]

# ----------------------------------------------------------------------------- naming what came


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type, with its article ("an array")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def describe(value: object) -> str:
    """What the client sent, for "got ...": the type, and the value itself when it is short."""
    if isinstance(value, list) and not value:
        return "an empty array"
    if value is None:
        return "null"
    return f"{json_type(value)} {_short(value)}"


def _short(value: object, limit: int = 80) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def field_path(loc: Sequence[str | int]) -> str:
    """pydantic's location tuple as the body's path: ``("messages", 0, "role")`` -> ``messages[0].role``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else part
    return path


# ----------------------------------------------------------------------------- the translator

# What pydantic's own type errors expect, in the words of a JSON body. Field-specific wording
# ("a string or an array of text parts") comes from schema.expect(), as error type "expected".
# The *_parsing types come from lax (non-strict) models only; ours are strict.
_EXPECTED: dict[str, str] = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_parsing": "true or false",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "string_type": "a string",
    "dict_type": "an object",
    "model_type": "an object",
    "list_type": "an array",
}
_BOUNDS: dict[str, tuple[str, str]] = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}


def api_error_from_validation(
    exc: ValidationError, *, prefix: Loc = (), unknown_key: Callable[[str], str] | None = None
) -> ApiError:
    """The 400 for a body that failed validation, naming the first problem found.

    An unknown key is reported before anything else: it is usually a typo that also explains a
    "missing" value. ``prefix`` is where the validated value sits in the body (for a value validated
    on its own); ``unknown_key`` words the unknown-key message for the route (it gets the key).
    """
    errors = exc.errors(include_url=False)
    unknown = sorted(field_path((*prefix, *e["loc"])) for e in errors if e["type"] == "extra_forbidden")
    if unknown:
        key = unknown[0]
        message = unknown_key(key) if unknown_key else f"unsupported field {key!r}; leave it out"
        return ApiError(400, message, param=key)
    first = errors[0]
    path = field_path((*prefix, *first["loc"]))
    problem = _problem(first)
    if problem is None:  # a rule's own sentence (schema raises these with the whole wording)
        return ApiError(400, f"{path}: {first['msg']}" if path else first["msg"], param=path or None)
    return ApiError(400, f"{path} {problem}", param=path)


def _problem(error: ErrorDetails) -> str | None:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error["input"]
    if kind == "missing":
        return "is required"
    if kind == "expected":
        return f"must be {ctx['expected']}, got {describe(value)}"
    if kind in _EXPECTED:
        return f"must be {_EXPECTED[kind]}, got {describe(value)}"
    if kind in _BOUNDS:
        name, relation = _BOUNDS[kind]
        return f"must be {relation} {ctx[name]}, got {_short(value)}"
    if kind == "literal_error":
        return f"must be {ctx['expected']}, got {describe(value)}"
    return None


def lone_surrogate(value: Any, path: str = "") -> str | None:
    """The path (``messages[0].content``) of the first string holding a lone surrogate, else None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and lone_surrogate(key) is not None:
                return f"a key in {path}" if path else "a key"  # not the key itself: it cannot be printed
            inner = f"{path}.{key}" if path else str(key)
            found = lone_surrogate(item, inner)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = lone_surrogate(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None


Body = TypeVar("Body", bound=BaseModel)


def validate(model: type[Body], body: Mapping[str, Any]) -> Body:
    """The body as ``model``, or the 400 that names the first wrong field (a model may word its
    unknown-key message with a ``unknown_key_message(key)`` classmethod)."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise api_error_from_validation(exc, unknown_key=getattr(model, "unknown_key_message", None)) from None
