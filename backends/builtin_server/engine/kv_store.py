"""What the scheduler asks of the KV side: take a prompt for prefill, prefill, decode, retire.

Two implementations: ``SlotStore`` (slot_store.py: rows in slots written in place, a prefix cache,
rows behind different cached prefixes prefilled in one pass) for models whose attention it can take
over, which the start-up check proves; ``PaddedStore`` (padded_store.py: one left-padded
Transformers cache, round two's engine) for any other model, which then runs without a prefix cache.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import torch

from backends.builtin_server.engine.prompts import Prepared


class Wait(Enum):
    """Why a prompt was not taken this turn."""

    ROOM = "room"  # no slot, no KV budget or no prefill allowance left this turn: nothing behind it goes either
    PREFIX = "prefix"  # its prefix is being computed for another request: it waits for that, others may go


@dataclass(frozen=True)
class Prefilled:
    """A prompt whose KV is complete: the logits of its next token, and how much came from the cache."""

    prepared: Prepared
    logits: torch.Tensor  # (vocab,), float32, on the CPU
    cached_tokens: int


class KvStore(ABC):
    prefix_caching: bool = False

    @abstractmethod
    def __len__(self) -> int:
        """Rows decoding."""

    @abstractmethod
    def continuing(self) -> None:
        """At the start of a turn: the next chunks of prompts taken earlier, within the turn's allowance."""

    @abstractmethod
    def offer(self, prepared: Prepared, *, rows: int) -> int | Wait:
        """Take ``prepared`` for prefill if it fits: returns the prompt tokens it computes this
        turn (within the turn's allowance), or why it waits. ``rows``: decoding and prefilling rows
        already promised, its own choices not counted. Raises ApiError when it never can fit."""

    @abstractmethod
    def prefill(self) -> list[Prefilled]:
        """One forward pass over this turn's prefill work; the prompts it completed."""

    @abstractmethod
    def prefilling(self) -> int:
        """Rows promised to prompts taken but not yet complete (their choices counted)."""

    @abstractmethod
    def drop_prefill(self, prepared: Prepared) -> None:
        """Forget a prompt taken but not complete (its client left, or it failed)."""

    @abstractmethod
    def join(self, done: Prefilled, first_tokens: Sequence[int]) -> None:
        """The rows of a completed prompt that go on decoding (one per token given) join the
        batch, after the rows already there, in this order."""

    @abstractmethod
    def step(self) -> torch.Tensor:
        """Decode one token for every row: next-token logits, (rows, vocab), float32 on the CPU."""

    @abstractmethod
    def advance(self, tokens: Sequence[int]) -> None:
        """The tokens the rows picked: the next step's input."""

    @abstractmethod
    def retire(self, done: Sequence[int]) -> list[int]:
        """Rows ``done`` leave (their KV may stay in the prefix cache); returns the old indices of
        the rows that go on, in their new order."""

    @abstractmethod
    def clear(self) -> None:
        """Drop every row and prompt (after a failure that ended them all)."""

    @property
    @abstractmethod
    def tokens(self) -> int:
        """KV tokens allocated (rows, padding and the prefix cache included): what the budget bounds."""

    @property
    @abstractmethod
    def row_tokens(self) -> int:
        """KV tokens the rows and prompts hold now (0 when nothing runs)."""
