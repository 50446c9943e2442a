"""POST /v1/rerank (and /rerank): one query scored against documents by a cross-encoder, answered
in the shape vLLM, llama.cpp, Jina and Cohere share: ``results`` sorted by ``relevance_score``
(highest first), each with the document's ``index`` in the request and, unless
``return_documents`` is false, the ``document`` itself; ``top_n`` keeps the best n; ``usage``
counts the tokens of every (query, document) pair scored."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from backends.builtin_server.api.common import check_model
from backends.builtin_server.api.pooling_protocol import RerankRequest
from backends.builtin_server.api.validation import validate
from backends.builtin_server.engine.encoders import MAX_INPUTS
from backends.builtin_server.engine.pooling import PoolResult
from backends.builtin_server.errors import ApiError


@dataclass(frozen=True)
class RerankCall:
    query: str
    documents: list[str]
    top_n: int  # how many results to return (all when the request asked for 0 or none)
    return_documents: bool

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(self.query, d) for d in self.documents]


def parse_rerank_request(body: Mapping[str, Any], *, served_name: str) -> RerankCall:
    check_model(body, served_name)
    req = validate(RerankRequest, body)
    documents = [d if isinstance(d, str) else d.text for d in req.documents]
    if not req.query:
        raise ApiError(400, "query must not be empty; send the text to rank the documents for", param="query")
    if not documents:
        raise ApiError(400, "documents must not be an empty array; send the texts to rank", param="documents")
    if len(documents) > MAX_INPUTS:
        raise ApiError(400, f"documents has {len(documents)} items; at most {MAX_INPUTS} per request",
                       param="documents")  # fmt: skip
    top_n = min(req.top_n or len(documents), len(documents))
    return RerankCall(req.query, documents, top_n, req.return_documents)


def rerank_body(call: RerankCall, result: PoolResult, *, served_name: str) -> dict[str, Any]:
    ranked = sorted(range(len(call.documents)), key=lambda i: (-result.outputs[i], i))[: call.top_n]
    results = []
    for i in ranked:
        entry: dict[str, Any] = {"index": i, "relevance_score": result.outputs[i]}
        if call.return_documents:
            entry["document"] = {"text": call.documents[i]}
        results.append(entry)
    tokens = sum(result.tokens)
    return {"id": f"rerank-{uuid.uuid4().hex}", "model": served_name, "results": results,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip
