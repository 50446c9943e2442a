"""OpenAI's own response schemas, vendored from the openai/openai-openapi repository, and a
validator for them.

Only the schemas our servers answer with are kept (and everything they reference), in
tests/fixtures/openai/schemas.json, with the source commit in its ``x-source``. To refresh:

    python -m tests.openai_schema PATH/TO/openapi.json --commit SHA

OpenAPI 3.1 documents are JSON Schema 2020-12, except for the 3.0 keyword ``nullable: true``
that this one still uses in places; ``validator()`` rewrites it into a ``null`` alternative so
that a null the schema allows validates and one it does not allow fails.
"""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

VENDORED = Path(__file__).parent / "fixtures" / "openai" / "schemas.json"
SOURCE_REPO = "https://github.com/openai/openai-openapi"

# What each kind of response is, in OpenAI's names.
KINDS = {
    "chat": "CreateChatCompletionResponse",
    "chat_chunk": "CreateChatCompletionStreamResponse",
    "completion": "CreateCompletionResponse",  # streamed completions use the same object
    "models": "ListModelsResponse",
    "error": "ErrorResponse",
    "response": "Response",  # the Responses API's object (non-streamed, and inside its stream events)
    "response_event": "ResponseStreamEvent",  # any Responses stream event (event_problems picks the one by type)
}
REF = "#/components/schemas/"


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF):
            yield ref[len(REF) :]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def extract(openapi: dict[str, Any], roots: list[str]) -> dict[str, Any]:
    """The named schemas and, transitively, every schema they reference."""
    schemas = openapi["components"]["schemas"]
    kept: dict[str, Any] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in kept:
            continue
        kept[name] = schemas[name]
        todo.extend(_refs(schemas[name]))
    return dict(sorted(kept.items()))


def _nullable(node: Any) -> Any:
    if isinstance(node, list):
        return [_nullable(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


def validator(kind: str) -> Draft202012Validator:
    """A validator for one kind of response (a key of KINDS), refs resolved in the vendored file."""
    document = _nullable(copy.deepcopy(json.loads(VENDORED.read_text())))
    schema = {"$ref": REF + KINDS[kind], "components": document["components"]}
    return Draft202012Validator(schema)


def problems(kind: str, body: Any) -> list[str]:
    """Every way ``body`` breaks OpenAI's schema for ``kind``, as "path: message" lines."""
    found = sorted(validator(kind).iter_errors(body), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in found]


def event_problems(event: Any) -> list[str]:
    """``problems`` for one Responses stream event, against the schema of its own ``type`` (the
    union's error would only say that it matches none of its members)."""
    document = json.loads(VENDORED.read_text())
    members = [m["$ref"][len(REF):] for m in document["components"]["schemas"][KINDS["response_event"]]["anyOf"]]
    by_type = {}
    for name in members:
        for kind in document["components"]["schemas"][name].get("properties", {}).get("type", {}).get("enum", []):
            by_type[kind] = name
    name = by_type.get(event.get("type") if isinstance(event, dict) else None)
    if name is None:
        return [f"<root>: no Responses stream event has type {event.get('type')!r}"]
    schema = {"$ref": REF + name, "components": _nullable(copy.deepcopy(document))["components"]}
    found = sorted(Draft202012Validator(schema).iter_errors(event), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in found]


def main() -> None:
    p = argparse.ArgumentParser(description="Vendor the OpenAI response schemas the tests validate against.")
    p.add_argument("openapi", type=Path, help="openapi.json from a checkout of openai/openai-openapi")
    p.add_argument("--commit", required=True, help="the commit that file comes from")
    args = p.parse_args()
    openapi = json.loads(args.openapi.read_text())
    vendored = {
        "x-source": {"repository": SOURCE_REPO, "path": "openapi.json", "commit": args.commit,
                     "openapi": openapi["openapi"], "api_version": openapi["info"]["version"]},  # fmt: skip
        "components": {"schemas": extract(openapi, sorted(KINDS.values()))},
    }
    VENDORED.parent.mkdir(parents=True, exist_ok=True)
    VENDORED.write_text(json.dumps(vendored, indent=1, sort_keys=False) + "\n")


if __name__ == "__main__":
    main()
