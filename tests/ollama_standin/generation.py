"""The stand-in's deterministic "generation": no model, the reply is "Stand-in reply from MODEL:
<the prompt>" cut to the token budget, its "tokens" are words, and embeddings are bytes of a hash."""

from __future__ import annotations

import hashlib
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


def embedding(text: str, dims: int = 8) -> list[float]:
    raw = hashlib.sha256(text.encode()).digest()
    return [round((b - 128) / 128, 6) for b in raw[:dims]]


def as_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
