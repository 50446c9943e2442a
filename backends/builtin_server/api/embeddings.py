"""POST /v1/embeddings: from the wire request to the encoder's inputs, and its vectors back in
OpenAI's shape (floats, or base64 of little-endian float32 as the openai SDKs ask by default).

``dimensions``: the model's own size is accepted (AgentScope 1.x sends it on every call); a
smaller one only for a model trained Matryoshka-style (its config.json says so, as vLLM reads it),
and then the vector is cut to it and scaled back to unit length; anything else is a 400 naming the
size. Empty input, an empty string and more than 2,048 inputs are 400s, as OpenAI answers them.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy

from backends.builtin_server.api.common import check_model
from backends.builtin_server.api.pooling_protocol import EmbeddingsRequest
from backends.builtin_server.api.validation import validate
from backends.builtin_server.engine.encoders import MAX_INPUTS
from backends.builtin_server.engine.pooling import PoolResult
from backends.builtin_server.errors import ApiError


@dataclass(frozen=True)
class EmbeddingsCall:
    inputs: list[str | list[int]]
    encoding_format: str
    dimensions: int | None  # cut to this (Matryoshka); None: the model's own size


def parse_embeddings_request(body: Mapping[str, Any], *, served_name: str, size: int,
                             matryoshka: tuple[int, ...] | bool) -> EmbeddingsCall:  # fmt: skip
    check_model(body, served_name)
    req = validate(EmbeddingsRequest, body)
    raw = req.input
    inputs: list[str | list[int]]
    if isinstance(raw, str):
        inputs = [raw]
    elif raw and all(isinstance(x, int) for x in raw):
        inputs = [list(raw)]  # type: ignore[arg-type]  # one array of token ids
    else:
        inputs = list(raw)  # type: ignore[arg-type]  # strings, or token-id arrays
    if not inputs:
        raise ApiError(400, "input must not be an empty array; send a string or an array of strings", param="input")
    if len(inputs) > MAX_INPUTS:
        raise ApiError(400, f"input has {len(inputs)} items; at most {MAX_INPUTS} per request", param="input")
    for i, value in enumerate(inputs):
        if not value:
            what = "an empty string" if isinstance(value, str) else "an empty array of token ids"
            raise ApiError(400, f"input[{i}] is {what}; send something to embed", param="input")
    return EmbeddingsCall(inputs, req.encoding_format, _dimensions(req.dimensions, size, matryoshka))


def _dimensions(asked: int | None, size: int, matryoshka: tuple[int, ...] | bool) -> int | None:
    if asked is None or asked == size:
        return None
    if matryoshka is False:
        raise ApiError(400, f"dimensions must be {size} (this model's size) or left out: it was not trained "
                            f"Matryoshka-style, so a shorter vector would lose meaning; got {asked}",
                       param="dimensions")  # fmt: skip
    allowed = matryoshka if isinstance(matryoshka, tuple) else None
    if asked > size or (allowed is not None and asked not in allowed):
        sizes = ", ".join(map(str, allowed)) if allowed else f"1..{size}"
        raise ApiError(400, f"dimensions must be one of {sizes} for this model (size {size}); got {asked}",
                       param="dimensions")  # fmt: skip
    return asked


def _vector(raw: Any, call: EmbeddingsCall) -> Any:
    vector = numpy.asarray(raw, dtype=numpy.float32)
    if call.dimensions is not None:
        vector = vector[: call.dimensions]
        norm = float(numpy.linalg.norm(vector))
        vector = vector / norm if norm > 0 else vector
    if call.encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.astype(numpy.float64).tolist()  # Python floats, converted in C


def embeddings_body(call: EmbeddingsCall, result: PoolResult, *, served_name: str) -> dict[str, Any]:
    tokens = sum(result.tokens)
    data = [{"object": "embedding", "index": i, "embedding": _vector(v, call)} for i, v in enumerate(result.outputs)]
    return {"object": "list", "data": data, "model": served_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip


def sample_inputs() -> Sequence[str]:
    """What the server embeds once before it binds its port (the warm-up)."""
    return ["Hi"]
