"""The request bodies of the embedding and rerank surfaces as pydantic models: shapes and types.

Strict like the generation bodies (protocol.py): a boolean is not a token id, a number is not a
string, unknown top-level keys are refused by name. Rules between fields (``dimensions`` against
the model's size, lengths against its limit) live in embeddings.py / rerank.py and the encoder.

- Embeddings, OpenAI's shape: ``input`` a string, an array of strings, an array of token ids or an
  array of token-id arrays (the model's own token ids); ``encoding_format`` float or base64;
  ``dimensions``; ``user`` (logged).
- Rerank, the shape vLLM, llama.cpp, Jina and Cohere share: ``query``, ``documents`` (strings, or
  ``{"text": ...}`` objects as Jina and Cohere's v1 send them), ``top_n`` (0: all, as vLLM reads
  it), ``return_documents`` (default true, as vLLM and llama.cpp answer).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from backends.builtin_server.api.protocol import RequestBody, _Strict, expect

TokenIds = list[Annotated[int, Field(ge=0)]]
EmbeddingInput = Annotated[
    str | list[str] | TokenIds | list[TokenIds],
    expect("a string, an array of strings, an array of token ids or an array of token-id arrays", inside=True),
]


class EmbeddingsRequest(RequestBody):
    route: ClassVar[str] = "/v1/embeddings"

    model: str | None = None  # compared with the served name before validation, as on every route
    input: EmbeddingInput
    encoding_format: Annotated[Literal["float", "base64"], expect('"float" or "base64"')] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


class DocumentObject(_Strict):
    text: str


Document = Annotated[str | DocumentObject, expect('a string or {"text": "..."}', inside=True)]


class RerankRequest(RequestBody):
    route: ClassVar[str] = "/v1/rerank"

    model: str | None = None
    query: str
    documents: Annotated[list[Document], expect("an array of strings or {\"text\"} objects")]
    top_n: int | None = Field(default=None, ge=0)
    return_documents: bool = True
    user: str | None = None
