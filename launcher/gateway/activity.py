"""What the gateway remembers of the requests it passed on: a bounded ring of summaries (route,
member, status, prompt / completion / cached tokens, time to first token, duration, client
address; never a body), served at ``GET /modelserve/requests?after=ID`` for the dashboard.

The token counts are the member's own, read from the answer as it passes: the ``usage`` of a
JSON body, or of a stream's chunks (OpenAI's final usage chunk, Anthropic's message events,
the Responses API's ``response.completed``). A stream's first token is its first chunk that
carries text or a tool call. The summaries have the built-in server's shape (its ring is
``backends/builtin_server/http/recent_requests.py``; the launcher never imports the server).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CAPACITY = 512  # summaries kept; older ones fall off
JSON_LIMIT = 8 * 1024 * 1024  # larger answers are passed on without reading their usage
# Stream events that carry the first generated text, by their ``type`` (Anthropic, Responses).
TEXT_EVENTS = frozenset({"content_block_delta", "response.output_text.delta", "response.function_call_arguments.delta"})


@dataclass
class UsageWatch:
    """The token counts and first-token time of one answer, filled in as it passes."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    first_token_at: float | None = None
    _pending: bytes = b""

    def body(self, payload: bytes) -> None:
        if len(payload) <= JSON_LIMIT:
            try:
                obj = json.loads(payload)
            except ValueError:
                return
            if isinstance(obj, dict):
                self._usage(obj)

    def chunk(self, data: bytes, now: float) -> None:
        """Part of an SSE stream: complete ``data:`` lines are read, the rest kept for later. Only
        the lines that can matter are parsed: before the first token, and those naming usage."""
        lines = (self._pending + data).split(b"\n")
        self._pending = lines.pop()
        for line in lines:
            if not line.startswith(b"data:") or (self.first_token_at is not None and b'"usage"' not in line):
                continue
            try:
                obj = json.loads(line[5:])
            except ValueError:
                continue  # [DONE], or a line that is not JSON
            if isinstance(obj, dict):
                if self.first_token_at is None and _carries_a_token(obj):
                    self.first_token_at = now
                self._usage(obj)

    def _usage(self, obj: dict[str, Any]) -> None:
        found = _find_usage(obj)
        if found is None:
            return
        prompt = found.get("prompt_tokens", found.get("input_tokens"))
        completion = found.get("completion_tokens", found.get("output_tokens"))
        details = found.get("prompt_tokens_details") or found.get("input_tokens_details") or {}
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        cached = found.get("cache_read_input_tokens", cached)
        # Anthropic splits them: input in message_start, output in message_delta. Keep what each gives.
        self.prompt_tokens = prompt if isinstance(prompt, int) else self.prompt_tokens
        self.completion_tokens = completion if isinstance(completion, int) else self.completion_tokens
        self.cached_tokens = cached if isinstance(cached, int) else self.cached_tokens


@dataclass
class Passage:
    """What the handlers learn of one request on its way through, for its summary."""

    model: str | None = None
    member: str | None = None
    stream: bool = False
    watch: UsageWatch | None = None


def _find_usage(obj: dict[str, Any]) -> dict[str, Any] | None:
    """``usage`` at the top (OpenAI, embeddings and rerank too), in ``message`` (Anthropic's
    message_start), in ``response`` (Responses' response.completed) or in ``data.response``
    (AgentScope's /llm/ envelope; an embeddings answer's ``data`` is a list)."""
    data = obj.get("data")
    for holder in (obj, obj.get("message"), obj.get("response"), data.get("response") if isinstance(data, dict) else None):
        if isinstance(holder, dict) and isinstance(holder.get("usage"), dict):
            usage: dict[str, Any] = holder["usage"]
            return usage
    return None


def _carries_a_token(obj: dict[str, Any]) -> bool:
    if obj.get("type") in TEXT_EVENTS:
        return True
    for choice in obj.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        if delta.get("content") or delta.get("tool_calls") or choice.get("text"):
            return True
    return False


def tokens_per_second(completion: int | None, duration: float, ttft: float | None) -> float | None:
    """Tokens over the time after the first one (a stream), else over the whole request."""
    if not completion:
        return None
    span = duration - ttft if ttft is not None and completion > 1 else duration
    return round(completion / span, 2) if span > 0 else None


class Activity:
    """The ring. One event loop adds and reads, so no lock is needed."""

    def __init__(self, capacity: int = CAPACITY, *, clock: Callable[[], float] = time.time) -> None:
        self.capacity = capacity
        self.epoch = uuid.uuid4().hex[:12]
        self._clock = clock
        self._items: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._next = 1

    def add(self, *, route: str, model: str | None, member: str | None, status: int, stream: bool,
            duration_s: float, watch: UsageWatch | None, started: float, client: str | None) -> dict[str, Any]:  # fmt: skip
        ttft = None if watch is None or watch.first_token_at is None else round(watch.first_token_at - started, 4)
        completion = watch.completion_tokens if watch else None
        row = {"id": self._next, "time": round(self._clock(), 3), "method": "POST", "route": route, "model": model,
               "member": member, "status": status, "stream": stream,
               "prompt_tokens": watch.prompt_tokens if watch else None, "completion_tokens": completion,
               "cached_tokens": watch.cached_tokens if watch else None, "ttft_s": ttft,
               "duration_s": round(duration_s, 4), "client": client,
               "tokens_per_s": tokens_per_second(completion, duration_s, ttft)}  # fmt: skip
        self._next += 1
        self._items.append(row)
        return row

    def page(self, after: int) -> dict[str, Any]:
        return {"epoch": self.epoch, "capacity": self.capacity,
                "requests": [r for r in self._items if r["id"] > after]}  # fmt: skip
