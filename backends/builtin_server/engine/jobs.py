"""What crosses between an HTTP thread and the scheduler thread: a job in, results and stream events out.

An HTTP thread waits on a job's Future (or reads its event queue, for a stream); the scheduler
resolves each job exactly once. Nothing here imports torch.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from backends.builtin_server.engine.request import GenerationRequest
from backends.builtin_server.errors import ApiError
from backends.builtin_server.tools.spec import ToolCall


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token with its logprob under the model, and the likeliest alternatives."""

    token: str
    logprob: float
    bytes: tuple[int, ...]
    top: tuple[tuple[str, float, tuple[int, ...]], ...] = ()  # (token, logprob, bytes), best first


@dataclass(frozen=True)
class Choice:
    """One of a request's ``n`` replies."""

    text: str | None  # None: the reply is only tool calls
    completion_tokens: int
    finish_reason: str  # "stop" (eos or a stop string) | "length" | "tool_calls" | "cancelled"
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: tuple[TokenLogprob, ...] | None = None  # when asked for
    stop: str | None = None  # the stop string that ended it (finish_reason "stop")


@dataclass(frozen=True)
class Completion:
    prompt_tokens: int
    choices: tuple[Choice, ...]
    cached_tokens: int = 0  # of the prompt tokens, those whose KV came from the prefix cache

    # The first choice, for the routes and callers that ask for one reply (n = 1).
    @property
    def text(self) -> str | None:
        return self.choices[0].text

    @property
    def finish_reason(self) -> str:
        return self.choices[0].finish_reason

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return self.choices[0].tool_calls

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.choices)


@dataclass(frozen=True)
class StreamStarted:
    prompt_tokens: int


@dataclass(frozen=True)
class StreamDelta:
    text: str
    choice: int = 0
    logprobs: tuple[TokenLogprob, ...] | None = None  # of the tokens this text came from


@dataclass(frozen=True)
class StreamToolCall:
    index: int  # the call's place among the choice's calls
    call: ToolCall
    choice: int = 0


@dataclass(frozen=True)
class StreamChoiceFinished:
    choice: int
    finish_reason: str
    stop: str | None = None  # the stop string that ended it


@dataclass(frozen=True)
class StreamFinished:
    finish_reason: str  # the first choice's (every choice sent its own StreamChoiceFinished)
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0


@dataclass(frozen=True)
class StreamFailed:
    error: ApiError


StreamEvent = (
    StreamStarted | StreamDelta | StreamToolCall | StreamChoiceFinished | StreamFinished | StreamFailed
)


@dataclass(eq=False)
class Job:
    """One request in the scheduler's queue: a Future for a plain request, an event queue for a stream."""

    request: GenerationRequest
    future: Future[Completion] | None = None
    events: queue.Queue[StreamEvent] | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    resolved: bool = False
    arrived: float = field(default_factory=time.monotonic)

    def succeed(self, completion: Completion) -> None:
        if not self.resolved and self.future is not None:
            self.resolved = True
            self.future.set_result(completion)

    def fail(self, error: ApiError) -> None:
        if self.resolved:
            return
        self.resolved = True
        if self.future is not None:
            self.future.set_exception(error)
        elif self.events is not None:
            self.events.put(StreamFailed(error))

    def emit(self, event: StreamEvent) -> None:
        if self.events is not None and not self.resolved:
            self.events.put(event)
            if isinstance(event, StreamFinished):
                self.resolved = True


class StreamHandle:
    """What an HTTP thread holds for a streaming request."""

    def __init__(self, job: Job, events: queue.Queue[StreamEvent]) -> None:
        self._job = job
        self._events = events
        # When the first token (text or a tool call) was handed to the HTTP thread: the time to
        # first token the client sees, whatever surface frames it.
        self.first_token_at: float | None = None

    def next_event(self) -> StreamEvent:
        # No timeout: the scheduler always ends a stream with StreamFinished or StreamFailed,
        # and stop() fails every queued job.
        event = self._events.get()
        if self.first_token_at is None and isinstance(event, StreamDelta | StreamToolCall):
            self.first_token_at = time.monotonic()
        return event

    @property
    def n(self) -> int:
        return self._job.request.n

    def cancel(self) -> None:
        """The client went away: stop generating at the next step."""
        self._job.cancelled.set()
