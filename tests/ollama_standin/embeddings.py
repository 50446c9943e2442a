"""The stand-in's embeddings, for /api/embed, /api/embeddings and /v1/embeddings.

Built from Ollama docs/api.md ("Generate Embeddings": POST /api/embed {model, input (text or list
of text), truncate (default true: cut each input to the context length; false: an input past it
is an error), options, keep_alive, dimensions} -> {model, embeddings, total_duration,
load_duration, prompt_eval_count}; the older POST /api/embeddings {model, prompt} -> {embedding})
and docs/api/openai-compatibility.mdx (/v1/embeddings takes model, input as a string or an array
of strings (not token arrays), encoding_format and dimensions). A model whose config has an
``embedding_length`` (one pulled as an embedding model) embeds in that many numbers and
/api/show lists its capability "embedding"; any other model embeds in 8. The numbers are bytes of a
hash of the text (no meaning), scaled to unit length as /api/embed returns them.
"""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from typing import Any

from tests.ollama_standin.generation import pieces
from tests.ollama_standin.handler_base import BadRequest

DEFAULT_SIZE = 8


def size_of(cfg: dict[str, Any]) -> int:
    size = cfg.get("embedding_length")
    return size if isinstance(size, int) and size > 0 else DEFAULT_SIZE


def context_of(cfg: dict[str, Any]) -> int:
    length = cfg.get("context_length")
    return length if isinstance(length, int) and length > 0 else 2048


def vector(text: str, size: int, *, normalized: bool = True) -> list[float]:
    raw = b""
    counter = 0
    while len(raw) < size:
        raw += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    values = [(b - 127.5) / 128 for b in raw[:size]]
    norm = math.sqrt(sum(v * v for v in values)) if normalized else 1.0
    return [round(v / norm, 7) for v in values]


def texts_of(value: Any, *, openai: bool) -> list[str]:
    """``input`` as a list of texts; Ollama answers a wrong type with "invalid input type"."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    if value is None and not openai:
        return []
    raise BadRequest(400, "invalid input type")


def embed_all(texts: list[str], cfg: dict[str, Any], *, truncate: bool, dimensions: Any) -> list[list[float]]:
    size, context = size_of(cfg), context_of(cfg)
    if dimensions is not None and (not isinstance(dimensions, int) or isinstance(dimensions, bool)
                                   or not 0 < dimensions <= size):  # fmt: skip
        raise BadRequest(400, f"invalid dimensions: {dimensions}; the model embeds in {size}")
    out = []
    for text in texts:
        words = pieces(text)
        if len(words) > context:
            if not truncate:
                raise BadRequest(400, "input exceeds maximum context length")
            text = "".join(words[:context])
        full = vector(text, size)
        if dimensions is not None and dimensions < size:
            cut = full[:dimensions]
            norm = math.sqrt(sum(v * v for v in cut)) or 1.0
            full = [round(v / norm, 7) for v in cut]
        out.append(full)
    return out


def as_base64(values: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")
