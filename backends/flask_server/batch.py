"""The rows decoding together: one left-padded KV cache, stepped one token at a time.

TGI's ``CausalLMBatch`` shape: a newcomer is prefilled on its own and joins (``add``: its cache
and the batch's are left-padded to one length and concatenated), every step decodes one token for
every row, and a finished row leaves at once (``keep``), taking its cache with it; columns that
became padding for every row are trimmed. The attention mask hides the padding, and each row
keeps its own position ids, so a row's tokens are the ones it would get alone (tests check it
for greedy decoding in float32).

Works with the caches Transformers builds for decoder-only models (``DynamicCache``: per layer a
keys and a values tensor, batch x heads x length x head_dim).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import DynamicCache


@dataclass
class Prefilled:
    """One prompt run through the model: its cache (batch of 1), length, and next-token logits."""

    cache: DynamicCache
    length: int
    logits: torch.Tensor  # (vocab,)


def _left_pad(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    if width <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = width
    return torch.cat([t.new_zeros(shape), t], dim=dim)


def _layers(cache: DynamicCache) -> list[Any]:
    return list(cache.layers)


@torch.inference_mode()
def prefill(model: Any, ids: Sequence[int]) -> Prefilled:
    device = model.device
    input_ids = torch.tensor([list(ids)], dtype=torch.long, device=device)
    out = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), past_key_values=DynamicCache(),
                use_cache=True)  # fmt: skip
    return Prefilled(out.past_key_values, len(ids), out.logits[0, -1].float())


class KvBatch:
    def __init__(self, model: Any) -> None:
        self.model = model
        self.cache: DynamicCache | None = None
        self.mask = torch.zeros((0, 0), dtype=torch.long, device=model.device)
        self.positions: list[int] = []  # each row's next position id
        self.last: list[int] = []  # each row's last token: the next step's input

    def __len__(self) -> int:
        return len(self.last)

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])

    def add(self, row: Prefilled, first_token: int, copies: int = 1) -> None:
        """Join ``copies`` rows that share the prefilled prompt (n > 1 prefills once)."""
        cache, length = row.cache, row.length
        mask = torch.ones((1, length), dtype=torch.long, device=self.mask.device)
        if copies > 1:
            cache.batch_repeat_interleave(copies)
            mask = mask.repeat(copies, 1)
        if self.cache is None:
            self.cache, self.mask = cache, mask
        else:
            width = max(self.width, length)
            for mine, theirs in zip(_layers(self.cache), _layers(cache), strict=True):
                mine.keys = torch.cat([_left_pad(mine.keys, width - self.width, 2),
                                       _left_pad(theirs.keys, width - length, 2)])  # fmt: skip
                mine.values = torch.cat([_left_pad(mine.values, width - self.width, 2),
                                         _left_pad(theirs.values, width - length, 2)])  # fmt: skip
            self.mask = torch.cat([_left_pad(self.mask, width - self.width, 1), _left_pad(mask, width - length, 1)])
        self.positions += [length] * copies
        self.last += [first_token] * copies

    def keep(self, rows: Sequence[int]) -> None:
        """Only ``rows`` go on (in this order); the others' caches are dropped at once."""
        if len(rows) == len(self):
            return
        if not rows:
            self.cache, self.mask = None, self.mask[:0, :0]
            self.positions, self.last = [], []
            return
        index = torch.tensor(list(rows), dtype=torch.long, device=self.mask.device)
        self.mask = self.mask[index]
        used = (self.mask.sum(dim=0) > 0).nonzero()
        start = int(used[0]) if len(used) else 0  # columns that are padding for every row left
        self.mask = self.mask[:, start:]
        if self.cache is None:  # rows exist, so a cache does; this narrows the type
            raise RuntimeError("a batch with rows has no cache")
        for layer in _layers(self.cache):
            layer.keys = layer.keys[index][:, :, start:]
            layer.values = layer.values[index][:, :, start:]
        self.positions = [self.positions[i] for i in rows]
        self.last = [self.last[i] for i in rows]

    @torch.inference_mode()
    def step(self) -> torch.Tensor:
        """Decode one token for every row: the next-token logits, (rows, vocab), float32."""
        rows = len(self)
        device = self.mask.device
        self.mask = torch.cat([self.mask, torch.ones((rows, 1), dtype=torch.long, device=device)], dim=1)
        out = self.model(
            input_ids=torch.tensor(self.last, dtype=torch.long, device=device).view(rows, 1),
            attention_mask=self.mask,
            position_ids=torch.tensor(self.positions, dtype=torch.long, device=device).view(rows, 1),
            past_key_values=self.cache,
            use_cache=True,
        )
        self.cache = out.past_key_values
        self.positions = [p + 1 for p in self.positions]
        logits: torch.Tensor = out.logits[:, -1].float()
        return logits

    def advance(self, tokens: Sequence[int]) -> None:
        """The tokens each row picked: the next step's input."""
        self.last = list(tokens)
