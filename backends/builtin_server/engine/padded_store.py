"""Round two's KV side, for models the slot store cannot serve: one left-padded Transformers cache.

Newcomers are prefilled together in one forward pass (batch.py's ``prefill``) as long as the turn's
allowance holds them, a longer prompt alone a chunk per turn (``ChunkedPrefill``), and each joins
the batch by left-padding its cache to the batch's width. No prefix cache: a model with sliding
windows or its own attention runs here, as it did before the cache existed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from backends.builtin_server.engine import batch
from backends.builtin_server.engine.kv_store import KvStore, Prefilled, Wait
from backends.builtin_server.engine.prompts import Prepared
from backends.builtin_server.engine.slot_store import too_big


class PaddedStore(KvStore):
    prefix_caching = False

    def __init__(self, model: Any, *, budget: int, turn_tokens: int) -> None:
        self.model = model
        self.budget = budget
        self.turn_tokens = turn_tokens
        self.batch = batch.KvBatch(model)
        self.widths: list[int] = []  # per row: prompt + max_new, its widest
        self.group: list[Prepared] = []  # taken this turn, prefilled together
        self.chunked: tuple[Prepared, batch.ChunkedPrefill] | None = None  # a long prompt, part-way in
        self._done: tuple[list[Prepared], batch.Prefilled] | None = None

    def __len__(self) -> int:
        return len(self.batch)

    @property
    def tokens(self) -> int:
        return len(self.batch) * self.batch.width

    @property
    def row_tokens(self) -> int:
        return self.tokens

    def prefilling(self) -> int:
        taken = [*self.group, *([self.chunked[0]] if self.chunked else [])]
        return sum(p.job.request.n for p in taken)

    def continuing(self) -> None:
        return None  # a chunked prompt goes on in prefill(); nothing else is left between turns

    def offer(self, prepared: Prepared, *, rows: int) -> int | Wait:
        need = prepared.job.request.n * (len(prepared.ids) + prepared.max_new)
        if need > self.budget:
            raise too_big(need, self.budget)
        if self.chunked is not None or not self._fits(prepared):
            return Wait.ROOM
        width = max([len(prepared.ids), *(len(p.ids) for p in self.group)])
        if self.group and width * (len(self.group) + 1) > self.turn_tokens:
            return Wait.ROOM
        if len(prepared.ids) > self.turn_tokens:  # alone: its first chunk goes in this turn's pass
            self.chunked = (prepared, batch.ChunkedPrefill(self.model, prepared.ids, self.turn_tokens))
            return self.turn_tokens
        self.group.append(prepared)
        return len(prepared.ids)

    def _fits(self, prepared: Prepared) -> bool:
        """Every row at its widest (left padding included) within the budget."""
        if not self.widths and not self.group:
            return True
        others = [*self.group, prepared]
        widest = max(self.widths + [len(p.ids) + p.max_new for p in others])
        rows = len(self.widths) + sum(p.job.request.n for p in others)
        return rows * widest <= self.budget

    def drop_prefill(self, prepared: Prepared) -> None:
        if self.chunked is not None and self.chunked[0] is prepared:
            self.chunked = None
        self.group = [p for p in self.group if p is not prepared]

    def prefill(self) -> list[Prefilled]:
        if self.chunked is not None:
            prepared, chunks = self.chunked
            done = chunks.advance()
            if done is None:
                return []
            self.chunked = None
            self._done = ([prepared], done)
            return [Prefilled(prepared, done.logits[0], 0)]
        if not self.group:
            return []
        group, self.group = self.group, []
        done = batch.prefill(self.model, [p.ids for p in group])
        self._done = (group, done)
        return [Prefilled(p, done.logits[j], 0) for j, p in enumerate(group)]

    def join(self, done: Prefilled, first_tokens: Sequence[int]) -> None:
        if not first_tokens or self._done is None:
            return
        group, prefilled = self._done
        j = next(i for i, p in enumerate(group) if p is done.prepared)
        # A request with n > 1 lists its prompt n times: prefilled once, decoded n times.
        self.batch.add(prefilled, [j] * len(first_tokens), first_tokens)
        self.widths += [len(done.prepared.ids) + done.prepared.max_new] * len(first_tokens)

    def step(self) -> torch.Tensor:
        return self.batch.step()

    def advance(self, tokens: Sequence[int]) -> None:
        self.batch.advance(tokens)

    def retire(self, done: Sequence[int]) -> list[int]:
        gone = set(done)
        keep = [i for i in range(len(self.batch)) if i not in gone]
        self.batch.keep(keep)
        self.widths = [self.widths[i] for i in keep]
        return keep

    def clear(self) -> None:
        self.batch.keep([])
        self.widths, self.group, self.chunked, self._done = [], [], None, None
