"""The grammar endgame: a constrained reply that fits its token budget at all ends valid.

A row held to a grammar always knows a closing plan: tokens that, written next, would complete
what the grammar still requires from where the reply stands (the open string's quote, a number's
digits, each required key still missing with the shortest value its schema allows, the closing
brackets). The model writes freely as long as the plan from where its token leads still fits in
the tokens left; a token that would leave too little room is replaced by the plan's first token,
and the row follows the plan from there. So a reply ends complete as late as it can, whatever the
model would rather write, and the room reserved is what this grammar state needs: no more (a
reply is not cut short for a share of its budget), no less (nothing is cut off inside a string).
A reply whose budget cannot hold even the shortest completion from its start is left alone: it
runs to its budget and ends with finish_reason "length", as OpenAI's do.

The plan comes from the grammar itself: a copy of the row's matcher is walked a byte at a time
(llguidance's forced bytes in one go; at a choice, the byte that closes soonest: a quote inside a
string, a bracket outside one, else the cheapest value), and the bytes are tokenised. A plan
stays valid while the model writes inside a string, so it is recomputed only when the reply's
structure moves (~0.1-0.5 ms; keeping one costs ~20 us a token; the forward pass takes ~40 ms).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import llguidance

# Bytes to try at a choice, best first. Inside a string: its closing quote, else plain content
# (a string that must be longer, an enum's or a key's letters). Outside: close an object or an
# array, then the shortest values ("" and 0), separators, literals, and what opens more.
_IN_STRING = b'"' + bytes(range(ord("a"), ord("z") + 1)) + b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_- ."
_OUTSIDE = b'}]",: 0123456789ntf{[-.eE+'
_ANY = bytes(range(256))
# A plan longer than this many bytes is not a plan: the grammar wants more than a reply can give.
MAX_PLAN_BYTES = 4096
# Past the start, a walk gives up beyond this many bytes per token of room left: a plan denser
# than that (long forced keys in few tokens) is rare, and giving up only refuses the model's token.
# It keeps a schema that asks for thousands of items from costing a long walk at every token.
BYTES_PER_TOKEN = 16


@dataclass
class JsonLex:
    """Whether a JSON text so far ends inside a string (and right after a backslash in one)."""

    in_string: bool = False
    escaped: bool = False

    def feed(self, data: bytes) -> None:
        for b in data:
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif b == 0x5C:  # backslash
                    self.escaped = True
                elif b == 0x22:  # quote
                    self.in_string = False
            elif b == 0x22:
                self.in_string = True

    def copy(self) -> JsonLex:
        return JsonLex(self.in_string, self.escaped)


class Closer:
    """Closing plans for one vocabulary (its single-byte tokens are looked up once)."""

    def __init__(self, tokenizer: llguidance.LLTokenizer) -> None:
        self._tokenizer = tokenizer
        # The end tokens as the grammar knows them (the model's, given when the tokenizer was built).
        self.eos = tokenizer.eos_token
        self.eos_ids = frozenset(tokenizer.eos_tokens)
        self._byte_token: dict[int, int] = {}
        for b in range(256):
            ids = tokenizer.tokenize_bytes(bytes([b]))
            if len(ids) == 1:
                self._byte_token[b] = ids[0]
        self._order = {in_string: _ordered(prefer, self._byte_token)
                       for in_string, prefer in ((True, _IN_STRING), (False, _OUTSIDE))}  # fmt: skip

    def token_bytes(self, token: int) -> bytes:
        return self._tokenizer.decode_bytes([token])

    def closes(self, matcher: Any, plan: list[int]) -> bool:
        """Whether ``plan``, written next, completes ``matcher``'s grammar."""
        return bool(matcher.validate_tokens([*plan, self.eos]) == len(plan) + 1)

    def plan(self, matcher: Any, lex: JsonLex, max_bytes: int = MAX_PLAN_BYTES) -> list[int] | None:
        """The tokens that complete ``matcher``'s grammar soonest from where it stands, as far as
        a byte-at-a-time walk finds them; None when none does within ``max_bytes``."""
        walker, lex, out = matcher.deep_copy(), lex.copy(), bytearray()
        walked: list[int] = []
        while not walker.is_accepting():
            if walker.is_error() or len(out) > max_bytes:
                return None
            chunk = walker.compute_ff_bytes() or self._choice(walker, lex)
            if not chunk:
                return None
            tokens = self._tokenizer.tokenize_bytes(chunk)
            if not walker.consume_tokens(tokens):
                return None
            walked += tokens
            out += chunk
            lex.feed(chunk)
        # Tokenised whole, the closing bytes usually take fewer tokens than the walk's pieces.
        joined = self._tokenizer.tokenize_bytes(bytes(out))
        return joined if len(joined) < len(walked) and self.closes(matcher, joined) else walked

    def _choice(self, walker: Any, lex: JsonLex) -> bytes:
        mask = walker.compute_bitmask()
        order = self._order[lex.in_string and not lex.escaped]
        for b, token in order:
            if mask[token >> 3] >> (token & 7) & 1:
                return bytes([b])
        return b""


def _ordered(prefer: bytes, byte_token: dict[int, int]) -> list[tuple[int, int]]:
    """(byte, its token) for every byte with one: ``prefer``'s first, in order, then the rest."""
    order = list(dict.fromkeys([*prefer, *_ANY]))
    return [(b, byte_token[b]) for b in order if b in byte_token]


@dataclass
class Endgame:
    """One constrained row's closing plan, kept as the row decodes (``plan`` None: the reply
    cannot fit its budget, or its grammar has no end a walk finds: the row decodes freely)."""

    closer: Closer
    lex: JsonLex = field(default_factory=JsonLex)
    plan: list[int] | None = None

    @classmethod
    def start(cls, closer: Closer, matcher: Any, budget: int) -> Endgame:
        game = cls(closer)
        plan = closer.plan(matcher, game.lex)
        game.plan = plan if plan is not None and len(plan) <= budget else None
        return game

    def choose(self, matcher: Any, token: int, left: int) -> int:
        """The token to write, given the model's choice ``token`` and ``left`` tokens after it."""
        plan = self.plan
        if plan is None or token in self.closer.eos_ids:
            return token
        if plan and token == plan[0]:
            self.plan = plan[1:]
        else:
            after = self._plan_after(matcher, token, plan, left)
            if after is not None and len(after) <= left:
                self.plan = after
            elif plan:  # the model's token leaves too little room: the plan's own comes next
                token, self.plan = plan[0], plan[1:]
            else:  # complete, and no room to go on: end here
                return self.closer.eos
        self.lex.feed(self.closer.token_bytes(token))
        return token

    def _plan_after(self, matcher: Any, token: int, plan: list[int], left: int) -> list[int] | None:
        """The closing plan from the state ``token`` leads to: ``plan`` when ``token`` is text
        inside a string and the plan still closes from there, else a new walk (after a digit, the
        old plan would still close, but a digit longer than it needs)."""
        after = matcher.deep_copy()
        if not after.consume_token(token):
            return None
        data = self.closer.token_bytes(token)
        inside = self.lex.in_string and not self.lex.escaped and b'"' not in data and b"\\" not in data
        if inside and self.closer.closes(after, plan):
            return plan
        lex = self.lex.copy()
        lex.feed(data)
        return self.closer.plan(after, lex, min(MAX_PLAN_BYTES, BYTES_PER_TOKEN * (left + 1)))
