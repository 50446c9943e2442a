"""Rows in slots, a prefix cache, and prefill that computes only what no cache holds.

Slots ``0..d-1`` hold the decoding rows, in the scheduler's row order; slots ``d..d+p-1`` the prompts
being prefilled. A prompt taken for prefill gets a slot, its longest cached prefix is copied in, and
its remaining tokens are computed a chunk per turn (within the turn's prefill allowance) in one
forward pass with every other prompt of the turn, whatever column each starts at. A prompt whose
uncomputed prefix another prompt is computing right now waits for it (eight agents arriving with
one system prompt compute it once). A completed prompt's blocks enter the cache at once; a
finished row's (prompt and reply) when it leaves. Everything stays within the KV budget: the slots,
then the prefix cache in what is left, least recently used blocks evicted first.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from backends.builtin_server.engine.kv_slots import ForwardCache, ForwardRows, Geometry, SlotBuffer
from backends.builtin_server.engine.kv_store import KvStore, Prefilled, Wait
from backends.builtin_server.engine.prefix_cache import Hit, PrefixCache
from backends.builtin_server.engine.prompts import Prepared
from backends.builtin_server.errors import ApiError

# Transformers 5 renamed forward's past_key_values to cache (the old name still works, with a
# warning on every call); older releases know only the old name.
warnings.filterwarnings("ignore", message=".*past_key_values.*deprecated", category=FutureWarning)


@dataclass(eq=False)
class _Prompt:
    prepared: Prepared
    slot: int
    done: int  # prompt tokens whose KV is in the slot
    cached: int  # of those, how many came from the prefix cache
    keys: list[int] = field(default_factory=list)  # cache blocks it will add: others wait on them
    now: int = 0  # tokens it computes this turn

    @property
    def ids(self) -> list[int]:
        return self.prepared.ids

    @property
    def choices(self) -> int:
        return self.prepared.job.request.n


def too_big(need: int, budget: int) -> ApiError:
    return ApiError(400, f"this request needs {need} tokens of KV cache (prompt + max_tokens, x n), more than this "
                         f"server's budget of {budget}; ask for fewer tokens", param="max_tokens")  # fmt: skip


class SlotStore(KvStore):
    def __init__(self, model: Any, *, budget: int, max_rows: int, turn_tokens: int, prefix_cache: bool = True,
                 context: int | None = None) -> None:  # fmt: skip
        self.model = model
        self.turn_tokens = turn_tokens
        self.budget = budget
        self.max_rows = max_rows
        self.context = context or 1 << 16
        geometry = Geometry.of(model)
        self.buffer = SlotBuffer(geometry)
        self.cache = PrefixCache(geometry) if prefix_cache else None
        self.prefix_caching = prefix_cache
        self.seqs: list[list[int]] = []  # per decoding row: the tokens whose KV its slot holds
        self.limits: list[int] = []  # per decoding row: prompt + max_new (its widest)
        self.last: list[int] = []  # per decoding row: the next step's input
        self.prompts: list[_Prompt] = []
        self._inflight: dict[int, int] = {}  # block key -> prompts computing it
        self.hits = 0  # prompts that found a cached prefix
        self.hit_tokens = 0

    def __len__(self) -> int:
        return len(self.seqs)

    @property
    def tokens(self) -> int:
        return self.buffer.tokens + (self.cache.tokens if self.cache else 0)

    @property
    def row_tokens(self) -> int:
        return sum(len(s) for s in self.seqs) + sum(p.done for p in self.prompts)

    def prefilling(self) -> int:
        return sum(p.choices for p in self.prompts)

    # -- taking prompts -------------------------------------------------------------------------

    def offer(self, prepared: Prepared, *, rows: int) -> int | Wait:
        ids, n = prepared.ids, prepared.job.request.n
        need = n * (len(ids) + prepared.max_new)
        if need > self.budget:
            raise too_big(need, self.budget)
        hit = self.cache.lookup(ids, at_most=len(ids) - 1) if self.cache else Hit(0, ())
        keys = self.cache.uncached(ids, hit.tokens) if self.cache else []
        if keys and keys[0] in self._inflight:
            return Wait.PREFIX
        work = len(ids) - hit.tokens
        scheduled = [p.now for p in self.prompts if p.now]
        if not scheduled:
            take = min(work, self.turn_tokens)  # the turn's first piece may be a chunk of a long prompt
        elif (len(scheduled) + 1) * max(work, *scheduled) <= self.turn_tokens:
            take = work  # the forward pass costs its rows times its longest piece (left padding)
        else:
            return Wait.ROOM
        widest = max([len(ids) + prepared.max_new, *self.limits, *(len(p.ids) + p.prepared.max_new for p in self.prompts)])
        if not self._room(rows + n, widest):
            return Wait.ROOM
        slot = len(self.seqs) + len(self.prompts)
        if self.cache is not None:
            self.cache.copy_into(self.buffer, slot, hit)
            self.hits += hit.tokens > 0
            self.hit_tokens += hit.tokens
        prompt = _Prompt(prepared, slot, done=hit.tokens, cached=hit.tokens, keys=keys, now=take)
        for key in keys:
            self._inflight[key] = self._inflight.get(key, 0) + 1
        self.prompts.append(prompt)
        return take

    def _room(self, slots: int, width: int) -> bool:
        """Make the slot buffer at least ``slots`` x ``width`` within the budget (the prefix cache
        gives memory back first); False when the budget cannot hold it now."""
        if slots * width > self.budget:
            return False
        if slots > self.buffer.slots or width > self.buffer.width:
            # Grow with room to spare (each growth copies every slot), as far as the budget allows.
            s = max(slots, min(self.max_rows, 2 * self.buffer.slots))
            w = max(width, min(self.context + 1, 2 * self.buffer.width))
            if s * w > self.budget:
                s = slots
            if s * w > self.budget:
                w = width
            if self.cache is not None:
                self.cache.shrink(self.budget - s * w)
            self.buffer.reserve(s, w)
        return True

    def drop_prefill(self, prepared: Prepared) -> None:
        prompt = next((p for p in self.prompts if p.prepared is prepared), None)
        if prompt is not None:
            self._forget(prompt)
            self._relayout([], [])

    def _forget(self, prompt: _Prompt) -> None:
        self.prompts.remove(prompt)
        for key in prompt.keys:
            left = self._inflight.pop(key, 0) - 1
            if left > 0:
                self._inflight[key] = left

    # -- prefill --------------------------------------------------------------------------------

    def continuing(self) -> None:
        used = 0
        for p in self.prompts:
            p.now = min(len(p.ids) - p.done, self.turn_tokens - used)
            used += p.now

    @torch.inference_mode()
    def prefill(self) -> list[Prefilled]:
        if not any(p.now for p in self.prompts):
            return []
        first = len(self.seqs)
        rows = ForwardRows([p.done for p in self.prompts], [p.now for p in self.prompts])
        device = self.model.device
        columns, positions, mask = rows.tensors(device, self.buffer.width)
        ids = torch.zeros(columns.shape, dtype=torch.long, device=device)
        for r, p in enumerate(self.prompts):
            if p.now:
                ids[r, rows.queries - p.now :] = torch.tensor(p.ids[p.done : p.done + p.now], device=device)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1,
                         past_key_values=ForwardCache(self.buffer, first, columns, rows.visible))  # fmt: skip
        logits = out.logits[:, -1].float().cpu()
        done: list[Prefilled] = []
        for r, p in enumerate(self.prompts):
            if not p.now:
                continue
            p.done, p.now = p.done + p.now, 0
            if p.done == len(p.ids):
                if self.cache is not None:
                    self.cache.insert(p.ids, self.buffer, p.slot, limit=self.budget - self.buffer.tokens)
                done.append(Prefilled(p.prepared, logits[r], p.cached))
        return done

    def join(self, done: Prefilled, first_tokens: Sequence[int]) -> None:
        prompt = next(p for p in self.prompts if p.prepared is done.prepared)
        self._forget(prompt)
        k = len(first_tokens)
        self._relayout([prompt.slot] * k, [len(prompt.ids)] * k)
        ids = prompt.ids
        self.seqs += [list(ids) for _ in range(k)]
        self.limits += [len(ids) + prompt.prepared.max_new] * k
        self.last += list(first_tokens)

    def _relayout(self, joining: list[int], lengths: list[int]) -> None:
        """Slots after the decoding rows: first the ``joining`` slots' copies (new decoding rows),
        then the remaining prompts, in order. One gather and scatter moves them all."""
        first = len(self.seqs)
        sources = [*joining, *(p.slot for p in self.prompts)]
        widths = [*lengths, *(p.done for p in self.prompts)]
        targets = list(range(first, first + len(sources)))
        if sources != targets:
            self._copy(sources, targets, max(widths, default=0))
        for p, slot in zip(self.prompts, targets[len(joining) :], strict=True):
            p.slot = slot

    def _copy(self, sources: list[int], targets: list[int], width: int) -> None:
        if not sources or width == 0:
            return
        device = self.buffer.data.device
        src = torch.tensor(sources, dtype=torch.long, device=device)
        dst = torch.tensor(targets, dtype=torch.long, device=device)
        data = self.buffer.data
        # Indexing copies the sources before they are written: overlapping moves are safe.
        data[:, :, dst, :, :width] = data[:, :, src, :, :width]

    # -- decoding -------------------------------------------------------------------------------

    @torch.inference_mode()
    def step(self) -> torch.Tensor:
        rows = ForwardRows([len(s) for s in self.seqs], [1] * len(self.seqs))
        device = self.model.device
        columns, positions, mask = rows.tensors(device, self.buffer.width)
        out = self.model(input_ids=torch.tensor(self.last, dtype=torch.long, device=device).view(-1, 1),
                         attention_mask=mask, position_ids=positions, use_cache=True,
                         past_key_values=ForwardCache(self.buffer, 0, columns, rows.visible))  # fmt: skip
        for seq, token in zip(self.seqs, self.last, strict=True):
            seq.append(token)
        logits: torch.Tensor = out.logits[:, -1].float().cpu()
        return logits

    def advance(self, tokens: Sequence[int]) -> None:
        self.last = list(tokens)

    def retire(self, done: Sequence[int]) -> list[int]:
        gone = set(done)
        if self.cache is not None:
            for i in done:  # a finished row's prompt and reply stay for the next turn of its conversation
                self.cache.insert(self.seqs[i], self.buffer, i, limit=self.budget - self.buffer.tokens)
        survivors = [i for i in range(len(self.seqs)) if i not in gone]
        holes = [i for i in sorted(gone) if i < len(survivors)]
        movers = [i for i in reversed(survivors) if i >= len(survivors)][: len(holes)]
        order = list(range(len(survivors)))
        for hole, mover in zip(holes, movers, strict=True):
            order[hole] = mover
        width = max((len(self.seqs[i]) for i in movers), default=0)
        self._copy(movers, holes, width)
        self.seqs = [self.seqs[i] for i in order]
        self.limits = [self.limits[i] for i in order]
        self.last = [self.last[i] for i in order]
        self._relayout([], [])
        return order

    def clear(self) -> None:
        self.seqs, self.limits, self.last, self.prompts = [], [], [], []
        self._inflight.clear()
