"""Each row's own next token: its sampling settings, penalties, bias, grammar and seed.

Rows with different temperature / top-p / top-k / penalties / seed / grammar share every decoding
step: the model's logits for the whole batch come in, and each row turns its own row of them into
its own token here. The order is HF generate()'s and OpenAI's: repetition penalty (HF's, over the
prompt and the reply), presence / frequency penalties (OpenAI's, over the reply), logit_bias,
min_tokens, the grammar's mask, then temperature, top-k, top-p and the draw; last, the grammar's
endgame may put a closing token in place of the one drawn (tools/endgame.py).
Logprobs are those of the model's own distribution, before any of that (as vLLM reports them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from backends.builtin_server.engine.request import Sampling
from backends.builtin_server.tools.constraints import Grammars
from backends.builtin_server.tools.endgame import Endgame

# Below this a temperature means greedy, its limit (vLLM's _SAMPLING_EPS): dividing logits by
# 1e-308 underflows to a division by 0 in float32, and NaN probabilities fail the draw.
GREEDY_BELOW_TEMPERATURE = 1e-5


@dataclass(frozen=True)
class Pick:
    """A token's logprob under the model, and the likeliest alternatives (ids), best first."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


@dataclass
class RowSampler:
    sampling: Sampling
    eos_ids: frozenset[int]
    budget: int  # max new tokens: the grammar's endgame plans within it
    prompt: Sequence[int] = ()
    matcher: Any = None  # llguidance.LLMatcher, for a constrained reply
    grammars: Grammars | None = None
    top_logprobs: int | None = None  # None: no logprobs; 0: the chosen token's only
    generator: torch.Generator | None = None
    generated: list[int] = field(default_factory=list)
    _counts: torch.Tensor | None = None  # how often each token was generated (penalties)
    _endgame: Endgame | None = None

    @property
    def complete(self) -> bool:
        """Whether the row's grammar is satisfied and admits nothing more (only its end)."""
        return self.matcher is not None and self.matcher.is_stopped() and not self.matcher.is_error()

    def pick(self, logits: torch.Tensor) -> tuple[int, Pick | None]:
        """This row's next token from its logits (vocab,), and its logprob when asked for."""
        raw = torch.log_softmax(logits, dim=-1) if self.top_logprobs is not None else None
        s = self.sampling
        if self._counts is None and (s.presence_penalty or s.frequency_penalty):
            self._counts = torch.zeros_like(logits)
        scores = self._processed(logits.clone())
        token = self._closing(self._draw(scores))
        self._record(token)
        if raw is None:
            return token, None
        top: tuple[tuple[int, float], ...] = ()
        if self.top_logprobs:
            values, ids = raw.topk(self.top_logprobs)
            top = tuple(zip(ids.tolist(), values.tolist(), strict=True))
        return token, Pick(token, float(raw[token]), top)

    def _processed(self, scores: torch.Tensor) -> torch.Tensor:
        s = self.sampling
        if s.repetition_penalty != 1.0:
            seen = torch.tensor(list({*self.prompt, *self.generated}), dtype=torch.long, device=scores.device)
            picked = scores[seen]
            scores[seen] = torch.where(picked < 0, picked * s.repetition_penalty, picked / s.repetition_penalty)
        if self._counts is not None and (s.presence_penalty or s.frequency_penalty):
            scores -= s.frequency_penalty * self._counts + s.presence_penalty * (self._counts > 0).to(scores.dtype)
        for token, bias in s.logit_bias:
            if token < scores.shape[0]:
                scores[token] += bias
        if len(self.generated) < s.min_new_tokens:
            scores[list(self.eos_ids)] = float("-inf")
        if self.matcher is not None and self.grammars is not None:
            self._constrain(scores)
        return scores

    def _constrain(self, scores: torch.Tensor) -> None:
        grammars = self.grammars
        if grammars is None or self.matcher.is_error():
            return
        grammars.mask(self.matcher, scores)
        if bool(torch.isinf(scores).all()):  # min_tokens and a finished grammar disagree: end the row
            scores[min(self.eos_ids)] = 0.0

    def _closing(self, token: int) -> int:
        """The drawn token, or the one the grammar's endgame puts in its place (tools/endgame.py)."""
        if self.matcher is None or self.grammars is None or self.matcher.is_stopped():  # stopped: also on error
            return token
        if self._endgame is None:
            self._endgame = Endgame.start(self.grammars.closer, self.matcher, self.budget - len(self.generated))
        return self._endgame.choose(self.matcher, token, self.budget - len(self.generated) - 1)

    def _draw(self, scores: torch.Tensor) -> int:
        s = self.sampling
        # A repetition penalty near 0 can push a logit past float32's range (or make 0/0): +inf
        # would become NaN below (inf - inf) and fail the draw; the largest finite value keeps it
        # the favourite, and NaN is no candidate.
        scores = torch.nan_to_num(scores, nan=float("-inf"), posinf=torch.finfo(scores.dtype).max)
        temperature = s.temperature or 1.0
        if not s.do_sample or temperature < GREEDY_BELOW_TEMPERATURE:
            return int(scores.argmax())
        if temperature != 1.0:
            # From the best score down, so that dividing by a small temperature cannot overflow.
            scores = (scores - scores.max()) / temperature
        if s.top_k and s.top_k < scores.shape[0]:
            kth = scores.topk(s.top_k).values[-1]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if s.top_p is not None and s.top_p < 1.0:
            ordered, order = scores.sort(descending=True)
            cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
            drop = cumulative - ordered.softmax(dim=-1) > s.top_p  # keep the smallest set reaching top_p
            scores = scores.index_fill(0, order[drop], float("-inf"))
        probs = scores.softmax(dim=-1)
        return int(torch.multinomial(probs, 1, generator=self.generator))

    def _record(self, token: int) -> None:
        self.generated.append(token)
        if self._counts is not None and token < self._counts.shape[0]:
            self._counts[token] += 1
        if self.matcher is not None and not self.matcher.is_stopped():
            self.matcher.consume_token(token)
