"""From the request's bytes to a JSON object, or the 400 that says what is wrong with them.

Before any field is looked at: the body must be JSON (whatever the Content-Type says), an object,
nested no deeper than a real request is, and free of lone UTF-16 surrogates.
"""

from __future__ import annotations

import json
from typing import Any

from backends.builtin_server.api.validation import json_type, lone_surrogate
from backends.builtin_server.errors import ApiError

# Real bodies nest a few levels (a tool's JSON schema perhaps a dozen); far below the stack limit.
MAX_NESTING = 64


def nesting(value: Any) -> int:
    """How deep arrays and objects nest in ``value`` (a scalar: 0). Iterative: any depth is safe."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, depth = todo.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            deepest = max(deepest, depth)
            todo.extend((child, depth + 1) for child in children)
    return deepest


def _too_deep() -> ApiError:
    return ApiError(400, f"the request body nests arrays and objects more than {MAX_NESTING} levels deep; "
                         "send a flatter JSON object", code="too_deeply_nested")  # fmt: skip


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, whatever the Content-Type says (curl often sends none)."""
    if not raw.strip():
        raise ApiError(400, "the request body is empty; send a JSON object")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"the request body is not valid JSON ({exc}); send a JSON object") from exc
    except RecursionError:  # "[[[[..." a few thousand deep: the parser gives up before we can count
        raise _too_deep() from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, not {json_type(body)}")
    if nesting(body) > MAX_NESTING:
        # What json.loads still takes would overflow the stack of the checks below (and pydantic's).
        raise _too_deep()
    where = lone_surrogate(body)
    if where is not None:
        # JSON may spell "\ud800" but it is no character: the tokenizer (and any UTF-8 encoder)
        # fails on it, so it is refused here, by name, instead of failing as a 500 deep inside.
        raise ApiError(400, f"{where}: a lone UTF-16 surrogate (\\ud800-\\udfff) is not valid Unicode; "
                            "send text as valid UTF-8 or JSON escapes of whole characters",
                       param=None if where.startswith("a key") else where, code="invalid_unicode")  # fmt: skip
    return body
