"""The running rows' KV cache: one preallocated tensor of slots, written in place, read as views.

Transformers' ``DynamicCache`` grows by ``torch.cat`` on every step, copying the whole cache each
time, and its attention repeats every key/value head for each query head it serves (grouped-query
attention: SmolLM2's 3 KV heads serve 9 query heads) before scaled-dot-product attention whenever a
mask is given, which a batch of rows of different lengths always needs. At agent-sized contexts
(8 rows x 1.7k tokens) those copies cost more than the model itself. Here instead:

- ``SlotBuffer``: every layer's keys and values in one tensor, ``(layers, 2, slots, kv_heads,
  width + 1, head_dim)``. A row owns a slot; its tokens sit at columns ``0..length-1`` (left-aligned,
  so a row's column is its position id), and each forward pass writes the new tokens' keys and
  values in place at each row's own columns. The last column is scratch: padding tokens of a forward
  write there and no row ever reads it.
- ``ForwardCache``: what the model gets as ``past_key_values`` for one forward over a contiguous
  range of slots: ``update()`` scatters the new keys/values into the buffer and returns views.
- ``gqa_attention``: the attention function the model is switched to. It folds the query heads that
  share a KV head into the query length (``(rows, kv_heads, group x queries, dim)``), so
  scaled-dot-product attention reads each KV head once, with no copy.
- Masks are built here, 4-D and boolean, per row: a query at column c attends columns ``0..c`` of its
  own row. That is what lets one forward pass prefill rows whose prompts start at different columns
  (each behind its own cached prefix).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)

ATTENTION = "modelserve_gqa"


def gqa_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                  **kwargs: Any) -> tuple[torch.Tensor, None]:  # fmt: skip
    """Attention over grouped KV heads without repeating them: (rows, heads, queries, dim) in,
    (rows, queries, heads, dim) out, as Transformers' attention interface expects."""
    rows, heads, queries, dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads
    # Query heads g*group .. (g+1)*group-1 share KV head g (Transformers' repeat_kv order).
    packed = query.reshape(rows, kv_heads, group * queries, dim)
    mask = attention_mask
    if mask is None and queries > 1:  # a plain forward pass (no cache of ours): causal, as sdpa's is_causal
        keys = key.shape[2]
        mask = torch.ones((queries, keys), dtype=torch.bool, device=query.device).tril(keys - queries).view(1, 1, queries, keys)
    if mask is not None and group > 1 and queries > 1:
        mask = mask.repeat(1, 1, group, 1)  # the same rows of the mask for every head of a group
    out = F.scaled_dot_product_attention(packed, key, value, attn_mask=mask, scale=scaling)
    return out.reshape(rows, heads, queries, dim).transpose(1, 2).contiguous(), None


def register_attention() -> None:
    """Make ``ATTENTION`` a name models can be switched to. Masks for it are built as for sdpa (boolean,
    4-D) when a caller gives a 2-D one: a model switched to it still serves plain forward passes."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    AttentionInterface.register(ATTENTION, gqa_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])


@dataclass(frozen=True)
class Geometry:
    """The shape of a model's cache: what a slot holds per token."""

    layers: int
    kv_heads: int
    head_dim: int
    dtype: torch.dtype
    device: torch.device

    @property
    def bytes_per_token(self) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * torch.finfo(self.dtype).bits // 8

    @classmethod
    def of(cls, model: Any) -> Geometry:
        cfg = model.config
        heads = int(getattr(cfg, "num_attention_heads", 1) or 1)
        return cls(
            layers=int(cfg.num_hidden_layers),
            kv_heads=int(getattr(cfg, "num_key_value_heads", 0) or heads),
            head_dim=int(getattr(cfg, "head_dim", 0) or cfg.hidden_size // heads),
            dtype=model.dtype,
            device=model.device,
        )


class SlotBuffer:
    """Slots of KV cache, grown on demand (by copying into a larger tensor, rarely)."""

    def __init__(self, geometry: Geometry) -> None:
        self.geometry = geometry
        self.slots = 0
        self.width = 0  # usable columns per slot; column ``width`` is the scratch column
        self.data = self._alloc(0, 0)

    def _alloc(self, slots: int, width: int) -> torch.Tensor:
        g = self.geometry
        shape = (g.layers, 2, slots, g.kv_heads, width + 1, g.head_dim)
        return torch.zeros(shape, dtype=g.dtype, device=g.device)

    @property
    def tokens(self) -> int:
        """Tokens of cache allocated (what counts against the KV budget)."""
        return self.slots * self.width

    def reserve(self, slots: int, width: int) -> None:
        """At least ``slots`` slots of ``width`` columns; what is in the buffer stays."""
        if slots <= self.slots and width <= self.width:
            return
        slots, width = max(slots, self.slots), max(width, self.width)
        data = self._alloc(slots, width)
        data[:, :, : self.slots, :, : self.width] = self.data[:, :, :, :, : self.width]
        self.data, self.slots, self.width = data, slots, width

    def release(self) -> None:
        """Give the memory back (the engine is idle)."""
        self.data, self.slots, self.width = self._alloc(0, 0), 0, 0

    def move(self, source: int, target: int, length: int) -> None:
        """Copy slot ``source``'s first ``length`` columns into slot ``target``."""
        if source != target and length > 0:
            self.data[:, :, target, :, :length] = self.data[:, :, source, :, :length]

    def read(self, slot: int, start: int, stop: int) -> torch.Tensor:
        """Columns ``start..stop-1`` of one slot: (layers, 2, kv_heads, stop - start, dim), a view."""
        return self.data[:, :, slot, :, start:stop]

    def write(self, slot: int, start: int, kv: torch.Tensor) -> None:
        """``kv`` (layers, 2, kv_heads, n, dim) into one slot's columns ``start..start+n-1``."""
        self.data[:, :, slot, :, start : start + kv.shape[-2]] = kv


class ForwardCache:
    """``past_key_values`` for one forward pass over slots ``first .. first+rows-1``.

    ``columns`` (rows, queries): where each input token's key and value go (the scratch column for
    padding); attention then reads columns ``0..visible-1`` of each slot.
    """

    is_compileable = False

    def __init__(self, buffer: SlotBuffer, first: int, columns: torch.Tensor, visible: int) -> None:
        rows, queries = columns.shape
        g = buffer.geometry
        self._data = buffer.data[:, :, first : first + rows]
        self._index = columns.view(rows, 1, queries, 1).expand(rows, g.kv_heads, queries, g.head_dim)
        self._visible = visible

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        keys, values = self._data[layer_idx, 0], self._data[layer_idx, 1]
        keys.scatter_(2, self._index, key_states)
        values.scatter_(2, self._index, value_states)
        return keys[:, :, : self._visible], values[:, :, : self._visible]

    # What Transformers may ask of a cache besides update() (mask creation is skipped: the mask
    # given is already 4-D).
    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self._visible

    def __len__(self) -> int:
        return int(self._data.shape[0])


@dataclass(frozen=True)
class ForwardRows:
    """One forward pass's rows: for each, the column its first new token goes to (its cached
    length) and how many new tokens it brings (left-padded to the longest)."""

    starts: Sequence[int]
    counts: Sequence[int]

    @property
    def queries(self) -> int:
        return max(self.counts)

    @property
    def visible(self) -> int:
        return max(s + c for s, c in zip(self.starts, self.counts, strict=True))

    def tensors(self, device: torch.device, scratch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(columns, position ids, mask) for the model: left-padded queries, so each row's last
        new token is the last position (``logits_to_keep=1`` gives every row its next-token logits)."""
        q = self.queries
        starts = torch.tensor(list(self.starts), dtype=torch.long, device=device).view(-1, 1)
        counts = torch.tensor(list(self.counts), dtype=torch.long, device=device).view(-1, 1)
        j = torch.arange(q, dtype=torch.long, device=device).view(1, -1)
        pad = q - counts  # left padding of each row
        real = j >= pad
        positions = torch.where(real, starts + j - pad, torch.zeros_like(j))
        columns = torch.where(real, positions, torch.full_like(j, scratch))
        visible = torch.arange(self.visible, dtype=torch.long, device=device).view(1, 1, -1)
        # A real query sees its row's columns up to its own; a padding query sees column 0 only
        # (something, so its softmax is not 0/0: NaN would reach the scratch column's values).
        limit = torch.where(real, positions, torch.zeros_like(positions)).unsqueeze(-1)
        mask = (visible <= limit).unsqueeze(1)  # (rows, 1, queries, visible)
        return columns, positions, mask
