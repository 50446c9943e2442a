"""Anthropic's wire shapes, checked with the `anthropic` SDK's own types (its version pinned in
pyproject's test extra: 2.17.0) in pydantic's strict mode, plus a check the SDK does not make:
its models accept any extra field, so a field they do not declare is reported too.

Anthropic publishes no machine-readable schema of the Messages API that can be fetched here; the
SDK's types are generated from Anthropic's own OpenAPI spec, which makes them the closest thing.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from anthropic.types import Message, MessageTokensCount, RawMessageStreamEvent
from anthropic.types.shared import ErrorResponse
from pydantic import BaseModel, TypeAdapter, ValidationError

KINDS: dict[str, Any] = {"message": Message, "event": RawMessageStreamEvent, "error": ErrorResponse,
                         "count": MessageTokensCount}  # fmt: skip


@cache
def _adapter(kind: str) -> TypeAdapter[Any]:
    return TypeAdapter(KINDS[kind])


def _extras(value: Any, path: str) -> list[str]:
    found: list[str] = []
    if isinstance(value, BaseModel):
        found += [f"{path}.{key}: not a field of {type(value).__name__}" for key in value.model_extra or {}]
        for name in type(value).model_fields:
            found += _extras(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _extras(item, f"{path}[{i}]")
    return found


def problems(kind: str, body: Any) -> list[str]:
    """Every way ``body`` is not a ``kind`` (message | event | error | count) to the SDK, strictly.
    A ``ping`` event is one the SDK reads and skips: it must be exactly ``{"type": "ping"}``."""
    if kind == "event" and isinstance(body, dict) and body.get("type") == "ping":
        return [] if body == {"type": "ping"} else [f"<root>: a ping with more than its type: {body}"]
    try:
        parsed = _adapter(kind).validate_python(body, strict=True)
    except ValidationError as exc:
        return [f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in exc.errors()][:5]
    return _extras(parsed, "<root>")
