"""The prefix cache: the KV of token sequences the engine has seen, reused by requests that start the same way.

Agents resend their whole context every step (system prompt, tools, the conversation so far); the
KV cache of what was sent and generated before is kept here, keyed by token ids, and a new request
computes only what follows its longest cached prefix. vLLM's automatic prefix caching is the model:
full blocks of ``block`` tokens, each keyed by a hash of its tokens chained with its parent's, so a
block's key stands for the whole prefix up to its end. (A radix tree, SGLang's, matches to the token
instead of the block; with 16-token blocks the difference is at most 15 recomputed tokens of a
~100-token suffix, and a flat table is simpler to keep within a memory budget.)

Blocks live in one pool tensor, ``(capacity, layers, 2, kv_heads, block, head_dim)``; a request's
prefix is copied from the pool into its row's slot when it is admitted, so no block is pinned while
rows run, and any block may be evicted, least recently used first. Lookups and inserts touch a
chain from its last block to its first, so a chain's first blocks, shared by more sequences, are the
most recently used, and eviction takes the tails first. The pool grows (by copying) while the KV
budget leaves room, and is compacted when the running rows need the memory back.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from backends.builtin_server.engine.kv_slots import Geometry, SlotBuffer

BLOCK_TOKENS = 16


@dataclass
class _Block:
    index: int  # row of the pool
    tokens: tuple[int, ...]  # checked on every hit: a hash collision never serves another's KV
    parent: int | None


@dataclass(frozen=True)
class Hit:
    """A cached prefix: its length in tokens and the pool rows that hold it, in order."""

    tokens: int
    blocks: tuple[int, ...]


def chain(ids: Sequence[int], block: int = BLOCK_TOKENS) -> list[tuple[int, tuple[int, ...], int | None]]:
    """(key, tokens, parent key) of every full block of ``ids``, first to last."""
    out: list[tuple[int, tuple[int, ...], int | None]] = []
    parent: int | None = None
    for start in range(0, len(ids) - block + 1, block):
        tokens = tuple(ids[start : start + block])
        key = hash((parent, tokens))
        out.append((key, tokens, parent))
        parent = key
    return out


class PrefixCache:
    def __init__(self, geometry: Geometry, *, block: int = BLOCK_TOKENS) -> None:
        self.geometry = geometry
        self.block = block
        self._blocks: OrderedDict[int, _Block] = OrderedDict()  # least recently used first
        self._free: list[int] = []
        self.pool = self._alloc(0)
        self.evictions = 0

    def _alloc(self, capacity: int) -> torch.Tensor:
        g = self.geometry
        return torch.zeros((capacity, g.layers, 2, g.kv_heads, self.block, g.head_dim), dtype=g.dtype, device=g.device)

    @property
    def capacity(self) -> int:
        return int(self.pool.shape[0])

    @property
    def tokens(self) -> int:
        """Tokens of cache allocated for the pool (what counts against the KV budget)."""
        return self.capacity * self.block

    @property
    def cached_tokens(self) -> int:
        return len(self._blocks) * self.block

    @property
    def bytes(self) -> int:
        return self.tokens * self.geometry.bytes_per_token

    def __len__(self) -> int:
        return len(self._blocks)

    # -- lookups --------------------------------------------------------------------------------

    def lookup(self, ids: Sequence[int], *, at_most: int) -> Hit:
        """The longest cached prefix of ``ids`` no longer than ``at_most`` tokens."""
        found: list[int] = []
        keys: list[int] = []
        for key, tokens, _parent in chain(ids[: at_most - at_most % self.block], self.block):
            cached = self._blocks.get(key)
            if cached is None or cached.tokens != tokens:
                break
            found.append(cached.index)
            keys.append(key)
        self._touch(keys)
        return Hit(len(found) * self.block, tuple(found))

    def uncached(self, ids: Sequence[int], start: int) -> list[int]:
        """Keys of the full blocks of ``ids`` from token ``start`` on (what a prefill will add)."""
        return [key for key, _tokens, _parent in chain(ids, self.block)[start // self.block :]]

    def copy_into(self, buffer: SlotBuffer, slot: int, hit: Hit) -> None:
        if not hit.blocks:
            return
        index = torch.tensor(hit.blocks, dtype=torch.long, device=self.pool.device)
        blocks = self.pool.index_select(0, index)  # (n, layers, 2, kv_heads, block, dim)
        g = self.geometry
        kv = blocks.permute(1, 2, 3, 0, 4, 5).reshape(g.layers, 2, g.kv_heads, hit.tokens, g.head_dim)
        buffer.write(slot, 0, kv)

    # -- inserts --------------------------------------------------------------------------------

    def insert(self, ids: Sequence[int], buffer: SlotBuffer, slot: int, *, limit: int) -> int:
        """Keep the full blocks of ``ids`` (whose KV is in ``slot``, columns 0..len-1) that are not
        cached yet, as long as the pool stays within ``limit`` tokens; returns the blocks added."""
        blocks = chain(ids, self.block)
        new = [(i, key, tokens, parent) for i, (key, tokens, parent) in enumerate(blocks) if key not in self._blocks]
        room = limit // self.block - len(self._blocks)
        if len(new) > room:
            self.evict(len(new) - room, keep={key for key, _t, _p in blocks})
            room = limit // self.block - len(self._blocks)
            new = new[: max(0, room)]
        if new:
            self._grow(len(self._blocks) + len(new), limit // self.block)
            rows = [self._free.pop() for _ in new]
            g = self.geometry
            for (_i, key, tokens, parent), row in zip(new, rows, strict=True):
                self._blocks[key] = _Block(row, tokens, parent)
            # One copy per contiguous run would do; one per block is a handful of small copies.
            for (i, *_rest), row in zip(new, rows, strict=True):
                kv = buffer.read(slot, i * self.block, (i + 1) * self.block)
                self.pool[row] = kv.reshape(g.layers, 2, g.kv_heads, self.block, g.head_dim)
        self._touch([key for key, _t, _p in blocks if key in self._blocks])
        return len(new)

    def _touch(self, keys: list[int]) -> None:
        for key in reversed(keys):  # the chain's first block ends most recently used
            self._blocks.move_to_end(key)

    def _grow(self, needed: int, most: int) -> None:
        if needed <= self.capacity:
            return
        capacity = min(max(needed, 2 * self.capacity, 64), max(most, needed))
        pool = self._alloc(capacity)
        pool[: self.capacity] = self.pool
        self._free.extend(range(capacity - 1, self.capacity - 1, -1))
        self.pool = pool

    # -- memory ---------------------------------------------------------------------------------

    def evict(self, count: int, *, keep: set[int] | None = None) -> int:
        """Drop up to ``count`` least recently used blocks (not those in ``keep``)."""
        dropped = 0
        for key in list(self._blocks):
            if dropped >= count:
                break
            if keep and key in keep:
                continue
            self._free.append(self._blocks.pop(key).index)
            dropped += 1
        self.evictions += dropped
        return dropped

    def shrink(self, tokens: int) -> None:
        """Hold at most ``tokens`` of memory: evict least recently used blocks, then copy the rest
        into a smaller pool (the running rows need the room)."""
        capacity = max(0, tokens) // self.block
        if self.capacity <= capacity:
            return
        self.evict(len(self._blocks) - capacity)
        live = list(self._blocks.values())
        pool = self._alloc(capacity)
        if live:
            index = torch.tensor([b.index for b in live], dtype=torch.long, device=self.pool.device)
            pool[: len(live)] = self.pool.index_select(0, index)
            for row, b in enumerate(live):
                b.index = row
        self.pool = pool
        self._free = list(range(capacity - 1, len(live) - 1, -1))

    def clear(self) -> None:
        self.evictions += len(self._blocks)
        self._blocks.clear()
        self.pool, self._free = self._alloc(0), []
