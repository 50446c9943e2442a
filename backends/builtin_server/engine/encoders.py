"""The models of embed and rerank servers, loaded and run with sentence-transformers.

Why sentence-transformers: it applies what the model folder says (``modules.json``: the pooling
mode, Dense layers, normalisation; a default prompt; the cross-encoder's activation), which a
hand-written pass would have to re-implement per module type. bench/embeddings.py measured its
forward pass against a plain Transformers pass with the same mean pooling and normalisation: the
same vectors (cosine 1.0) at the same speed, so the library's exactness costs nothing.

- Embeddings: each input is tokenized once, here (a text by the model's tokenizer, with the
  lower-casing and default prompt the model declares; token arrays as given), checked against the
  model's ``max_seq_length``, padded into one batch and run through ``SentenceTransformer.forward``
  (every module of the folder). Equal to ``SentenceTransformer.encode`` (tests compare them).
- Rerank: ``CrossEncoder.predict`` on the (query, document) pairs, each first checked against the
  model's ``max_length``; scores are its activation of the one logit (sigmoid by default).
- ``--loader modelscope`` resolves a hub id through ModelScope's cache (``snapshot_download``,
  which reads its cache first); a folder is loaded as is by either loader.
"""

from __future__ import annotations

import importlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backends.builtin_server.engine.loaders import (
    LoadError,
    check_model_ref,
    dtype_kwarg,
    resolve_device,
    resolve_dtype,
)
from backends.builtin_server.errors import ApiError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy

log = logging.getLogger("modelserve.server")
MAX_INPUTS = 2048  # per request, as OpenAI's embeddings API allows


@dataclass(frozen=True)
class TokenIds:
    ids: list[int]

    @property
    def tokens(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Pair:
    query: str
    document: str
    tokens: int


def matryoshka_of(folder: str) -> tuple[int, ...] | bool:
    """The sizes the model was trained to be cut to, as vLLM reads them from config.json
    (``matryoshka_dimensions``, or ``is_matryoshka: true`` for any); False when it says neither."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    sizes = config.get("matryoshka_dimensions") if isinstance(config, dict) else None
    if isinstance(sizes, list) and sizes and all(isinstance(s, int) for s in sizes):
        return tuple(sizes)
    return bool(isinstance(config, dict) and config.get("is_matryoshka") is True)


class TextEncoder:
    """An embedding model: texts or token arrays -> one vector each."""

    task = "embed"

    def __init__(self, model: Any, folder: str) -> None:
        self.model = model
        self.tokenizer = model.tokenizer
        # sentence-transformers 6 renamed it; 5.x has only the old name.
        size = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        self.dimensions: int = int(size())
        self.max_tokens: int = int(model.max_seq_length or self.tokenizer.model_max_length)
        self.vocab = len(self.tokenizer)
        self.matryoshka = matryoshka_of(folder)
        first = model[0]
        self._lower = bool(getattr(first, "do_lower_case", False))
        prompt_name = getattr(model, "default_prompt_name", None)
        self._prompt = (getattr(model, "prompts", None) or {}).get(prompt_name, "") if prompt_name else ""
        self._token_types = "token_type_ids" in getattr(self.tokenizer, "model_input_names", ())

    def prepare(self, inputs: Sequence[str | list[int]]) -> list[TokenIds]:
        texts = [self._prompt + (v.lower() if self._lower else v) for v in inputs if isinstance(v, str)]
        # One call for all the texts: the tokenizer works through a batch faster than text by text.
        tokenized = iter(self.tokenizer(texts, add_special_tokens=True)["input_ids"] if texts else [])
        items = []
        for i, value in enumerate(inputs):
            if isinstance(value, str):
                ids = list(next(tokenized))
            else:
                bad = next((t for t in value if not 0 <= t < self.vocab), None)
                if bad is not None:
                    raise ApiError(400, f"input[{i}] holds token id {bad}, outside this model's vocabulary "
                                        f"(0..{self.vocab - 1})", param="input")  # fmt: skip
                ids = list(value)
            if len(ids) > self.max_tokens:
                raise ApiError(400, f"input[{i}] has {len(ids)} tokens; this model takes at most {self.max_tokens} "
                                    "per input (its max_seq_length): shorten or split it", param="input",
                               code="input_too_long")  # fmt: skip
            items.append(TokenIds(ids))
        return items

    def run(self, items: Sequence[Any]) -> list[numpy.ndarray]:
        import torch

        width = max(item.tokens for item in items)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.tensor([item.ids + [pad] * (width - item.tokens) for item in items])
        mask = torch.tensor([[1] * item.tokens + [0] * (width - item.tokens) for item in items])
        features = {"input_ids": ids.to(self.model.device), "attention_mask": mask.to(self.model.device)}
        if self._token_types:
            features["token_type_ids"] = torch.zeros_like(features["input_ids"])
        with torch.inference_mode():
            vectors = self.model.forward(features)["sentence_embedding"]
        return list(vectors.float().cpu().numpy())


class PairScorer:
    """A cross-encoder: (query, document) pairs -> one relevance score each."""

    task = "rerank"

    def __init__(self, model: Any) -> None:
        self.model = model
        self.tokenizer = model.tokenizer
        config = model.config
        self.max_tokens: int = int(min(model.max_length or 10**9, getattr(config, "max_position_embeddings", 10**9)))

    def prepare(self, inputs: Sequence[tuple[str, str]]) -> list[Pair]:
        items = []
        for i, (query, document) in enumerate(inputs):
            count = len(self.tokenizer(query, document, add_special_tokens=True)["input_ids"])
            if count > self.max_tokens:
                raise ApiError(400, f"the query with documents[{i}] is {count} tokens; this model takes at most "
                                    f"{self.max_tokens} per pair (its max_length): shorten the document or split it",
                               param="documents", code="input_too_long")  # fmt: skip
            items.append(Pair(query, document, count))
        return items

    def run(self, items: Sequence[Any]) -> list[float]:
        scores = self.model.predict([(p.query, p.document) for p in items], batch_size=len(items),
                                    show_progress_bar=False, convert_to_numpy=True)  # fmt: skip
        return [float(s) for s in scores]


Encoder = TextEncoder | PairScorer


def load_encoder(*, path: str, task: str, loader: str, device: str, dtype: str, trust_remote_code: bool) -> Encoder:
    """The model at ``path`` for ``task`` (embed | rerank), on ``device`` at ``dtype``."""
    ref = check_model_ref(path)
    folder = _folder(ref, loader)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    try:
        import sentence_transformers as st
    except ImportError as exc:
        raise LoadError(f"--task {task} needs the sentence-transformers package, which this interpreter lacks "
                        f"({exc}); install it: pip install 'modelserve[hf]'") from exc  # fmt: skip
    kwargs: dict[str, Any] = {"device": str(torch_device), "trust_remote_code": trust_remote_code,
              "model_kwargs": {dtype_kwarg(): torch_dtype}}  # fmt: skip
    if task == "embed":
        return TextEncoder(st.SentenceTransformer(folder, **kwargs).eval(), folder)
    if task != "rerank":
        raise LoadError(f"--task {task!r} is not embed or rerank")
    model = st.CrossEncoder(folder, **kwargs)
    labels = int(getattr(model.config, "num_labels", 1))
    if labels != 1:
        raise LoadError(f"--task rerank needs a cross-encoder with one output (a relevance score); {path} has a "
                        f"classification head of {labels} labels")  # fmt: skip
    return PairScorer(model)


def _folder(ref: str, loader: str) -> str:
    if Path(ref).is_dir():
        return ref
    if loader == "modelscope":
        try:
            snapshot_download = importlib.import_module("modelscope").snapshot_download
        except ImportError as exc:
            raise LoadError(f"--loader modelscope needs the modelscope package ({exc}); install it (pip install "
                            "'modelserve[modelscope]') or use --loader transformers") from exc  # fmt: skip
        return str(snapshot_download(ref))
    return ref  # a hub id: sentence-transformers resolves it from the Hugging Face cache
