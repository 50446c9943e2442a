"""The stand-in's deterministic "generation": no model, the reply is "Stand-in reply from MODEL:
<the prompt>" cut to the token budget, its "tokens" are words, and embeddings are bytes of a hash."""

from __future__ import annotations

import json
import re
from typing import Any


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def pieces(text: str) -> list[str]:
    """The stand-in's "tokens": words with their trailing space."""
    return re.findall(r"\S+\s*", text)


def reply_for(model: str, prompt: str, limit: int | None) -> tuple[list[str], str]:
    tokens = pieces(f"Stand-in reply from {model}: {prompt.strip()}")
    if limit is not None and limit >= 0 and len(tokens) > limit:
        return tokens[:limit], "length"
    return tokens, "stop"


def last_user(messages: list[Any]) -> str:
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            return text_of(msg.get("content"))
    return text_of(messages[-1].get("content")) if messages and isinstance(messages[-1], dict) else ""


def as_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _value_for(schema: Any, text: str) -> Any:
    """A value of the JSON-schema type ``schema`` names, taken from the user's words when it is text."""
    if not isinstance(schema, dict):
        return "x"
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return {}
    words = re.findall(r"[A-Z][\w-]*", text) or re.findall(r"\w+", text) or ["x"]
    return words[-1]


def tool_call_for(tools: Any, messages: list[Any]) -> dict[str, Any] | None:
    """The stand-in's "decision" (docs/api.md, chat request with tools): call the first function,
    its required arguments filled from the user's words; answer in text instead once the last
    message is a tool result (so a call -> result -> answer round trip ends)."""
    if not isinstance(tools, list) or not tools or not messages:
        return None
    if isinstance(messages[-1], dict) and messages[-1].get("role") == "tool":
        return None
    function = tools[0].get("function", {}) if isinstance(tools[0], dict) else {}
    params = function.get("parameters") or {}
    props = params.get("properties") or {}
    text = last_user(messages)
    arguments = {key: _value_for(props.get(key), text) for key in params.get("required") or []}
    return {"name": str(function.get("name", "")), "arguments": arguments}


def after_tool(messages: list[Any]) -> str | None:
    """The content of the tool result the last message carries, if it is one."""
    last = messages[-1] if messages else None
    return text_of(last.get("content")) if isinstance(last, dict) and last.get("role") == "tool" else None


def formatted_reply(fmt: Any, text: str) -> str | None:
    """A reply held to ``response_format`` (docs/api/openai-compatibility.mdx: json_object and
    json_schema are honoured): JSON of the schema's required properties, filled from the user's
    words as tool arguments are; None when no format applies."""
    if not isinstance(fmt, dict) or fmt.get("type") not in ("json_object", "json_schema"):
        return None
    schema = (fmt.get("json_schema") or {}).get("schema") if fmt["type"] == "json_schema" else None
    if not isinstance(schema, dict):
        return json.dumps({"reply": text})
    props = schema.get("properties") or {}
    return json.dumps({key: _value_for(props.get(key), text) for key in schema.get("required") or []})
