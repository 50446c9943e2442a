"""An engine that answers at once with canned results: the built-in server's Flask app tested
in-process (routes, error shapes, stream framing) without a model or a server process."""

from __future__ import annotations

import queue
from concurrent.futures import Future

from backends.builtin_server.engine.jobs import (
    Choice,
    Completion,
    Job,
    StreamChoiceFinished,
    StreamDelta,
    StreamEvent,
    StreamFinished,
    StreamHandle,
    StreamStarted,
)
from backends.builtin_server.engine.metrics import Metrics
from backends.builtin_server.engine.request import GenerationDefaults, GenerationRequest

USER = [{"role": "user", "content": "hi"}]


class FakeEngine:
    """The parts of Engine the routes use; answers at once with canned results."""

    def __init__(self) -> None:
        self.metrics = Metrics()
        self.limit = 4096
        self.defaults = GenerationDefaults()
        self.requests: list[GenerationRequest] = []

    def alive(self) -> bool:
        return True

    def submit(self, request: GenerationRequest) -> Future[Completion]:
        self.requests.append(request)
        future: Future[Completion] = Future()
        future.set_result(Completion(3, (Choice("hello", 1, "stop"),)))
        return future

    def submit_stream(self, request: GenerationRequest) -> StreamHandle:
        self.requests.append(request)
        events: queue.Queue[StreamEvent] = queue.Queue()
        script = (StreamStarted(3), StreamDelta("hel"), StreamDelta("lo"), StreamChoiceFinished(0, "stop"),
                  StreamFinished("stop", 3, 2))  # fmt: skip
        for event in script:
            events.put(event)
        return StreamHandle(Job(request=request, events=events), events)
