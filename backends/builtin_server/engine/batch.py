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
    """Prompts run through the model together: their cache (one row per prompt, left-padded to
    the longest), which columns are real tokens, and each prompt's next-token logits."""

    cache: DynamicCache
    mask: torch.Tensor  # (prompts, width): 1 for a prompt's tokens, 0 for its left padding
    lengths: list[int]
    logits: torch.Tensor  # (prompts, vocab), float32, on the CPU


def _left_pad(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    if width <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = width
    return torch.cat([t.new_zeros(shape), t], dim=dim)


def _layers(cache: DynamicCache) -> list[Any]:
    return list(cache.layers)


@torch.inference_mode()
def prefill(model: Any, prompts: Sequence[Sequence[int]]) -> Prefilled:
    """One forward pass over several prompts, left-padded: a group costs far less than its
    prompts one by one (SmolLM2 on 2 cores: 8 prompts of 37 tokens in 0.54 s, not 8 x 0.13 s)."""
    device = model.device
    width = max(len(p) for p in prompts)
    ids = torch.zeros((len(prompts), width), dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for i, prompt in enumerate(prompts):
        ids[i, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long, device=device)
        mask[i, width - len(prompt) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # each prompt counts from 0 at its first real token
    # logits_to_keep=1: the vocabulary projection only for the last position (a fifth of a
    # short prompt's prefill otherwise), as generate() does.
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=DynamicCache(),
                use_cache=True, logits_to_keep=1)  # fmt: skip
    return Prefilled(out.past_key_values, mask, [len(p) for p in prompts], out.logits[:, -1].float().cpu())


class ChunkedPrefill:
    """A prompt longer than one step's prefill allowance, prefilled a chunk per scheduler turn so
    the running rows keep decoding in between (a bounded stall per step, as vLLM's chunked prefill)."""

    def __init__(self, model: Any, ids: Sequence[int], chunk: int) -> None:
        self.model = model
        self.ids = list(ids)
        self.chunk = chunk
        self.done = 0
        self.cache = DynamicCache()
        self.logits: torch.Tensor | None = None

    @torch.inference_mode()
    def advance(self) -> Prefilled | None:
        """Prefill the next chunk; the whole prompt's Prefilled once the last one is in."""
        device = self.model.device
        part = self.ids[self.done : self.done + self.chunk]
        ids = torch.tensor([part], dtype=torch.long, device=device)
        mask = torch.ones((1, self.done + len(part)), dtype=torch.long, device=device)
        positions = torch.arange(self.done, self.done + len(part), device=device).view(1, -1)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=self.cache,
                         use_cache=True, logits_to_keep=1)  # fmt: skip
        self.cache = out.past_key_values
        self.done += len(part)
        if self.done < len(self.ids):
            return None
        return Prefilled(self.cache, mask, [len(self.ids)], out.logits[:, -1].float().cpu())


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

    def add(self, group: Prefilled, rows: Sequence[int], first_tokens: Sequence[int]) -> None:
        """Join one new row per entry of ``rows``, each a copy of that prompt of ``group`` (a
        request with n > 1 lists its prompt n times: prefilled once, decoded n times). ``group``
        itself is left as it was: another of its prompts may join later."""
        keys = [layer.keys for layer in _layers(group.cache)]
        values = [layer.values for layer in _layers(group.cache)]
        mask = group.mask
        if list(rows) != list(range(len(group.lengths))):
            index = torch.tensor(list(rows), dtype=torch.long, device=mask.device)
            keys, values, mask = [k[index] for k in keys], [v[index] for v in values], mask[index]
        if self.cache is None:
            self.cache, self.mask = DynamicCache(), mask
            for i, (k, v) in enumerate(zip(keys, values, strict=True)):
                self.cache.update(k, v, i)
        else:
            width, theirs_width = max(self.width, mask.shape[1]), int(mask.shape[1])
            for mine, k, v in zip(_layers(self.cache), keys, values, strict=True):
                mine.keys = torch.cat([_left_pad(mine.keys, width - self.width, 2), _left_pad(k, width - theirs_width, 2)])
                mine.values = torch.cat([_left_pad(mine.values, width - self.width, 2),
                                         _left_pad(v, width - theirs_width, 2)])  # fmt: skip
            self.mask = torch.cat([_left_pad(self.mask, width - self.width, 1), _left_pad(mask, width - theirs_width, 1)])
        self.positions += [group.lengths[r] for r in rows]
        self.last += list(first_tokens)

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
        """Decode one token for every row: the next-token logits, (rows, vocab), float32 on the CPU.

        Rows pick their tokens on the CPU (sampling.py) whatever the model's device: per-row
        settings stay plain tensor code, and a seed's torch.Generator draws the same on any device.
        """
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
        logits: torch.Tensor = out.logits[:, -1].float().cpu()
        return logits

    def advance(self, tokens: Sequence[int]) -> None:
        """The tokens each row picked: the next step's input."""
        self.last = list(tokens)
