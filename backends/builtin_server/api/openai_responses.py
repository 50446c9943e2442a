"""``POST /v1/responses``, served natively through the shared translator (``surfaces.responses``):
the Responses request (with the conversation ``previous_response_id`` names, from this server's
store) -> a chat request -> this server's chat path -> the chat result or chunks -> the Response
object or its events. Stored responses (``response_store`` not false) keep their conversation in a
bounded in-memory store with a TTL (surfaces/response_store.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from backends.builtin_server.api.openai_chat import chat_completion_body, parse_chat_request
from backends.builtin_server.api.openai_stream import chunk_objects
from backends.builtin_server.api.sse import Frames, StreamOutcome, sse
from backends.builtin_server.api.surface_common import api_error, chat_side, error_message, translated
from backends.builtin_server.engine.jobs import Completion, StreamHandle, StreamStarted
from backends.builtin_server.engine.request import GenerationRequest
from surfaces import chat, responses
from surfaces.response_store import ResponseStore
from surfaces.responses_stream import ResponsesStream
from surfaces.responses_wire import ResponsesRequest

NAMES = {"max_tokens": "max_output_tokens", "response_format": "text.format", "messages": "input"}


@dataclass(frozen=True)
class Turn:
    """One Responses request on its way: what was asked, the earlier turns, and its id."""

    req: ResponsesRequest
    history: tuple[chat.Message, ...]
    rid: str
    created_at: int

    def remember(self, store: ResponseStore, output: Sequence[Mapping[str, Any]]) -> None:
        if self.req.store is not False:
            store.put(self.rid, [*responses.conversation(self.req, self.history), *responses.as_history(output)])


def parse_responses_request(body: Mapping[str, Any], *, served_name: str, limit: int,
                            store: ResponseStore) -> tuple[Turn, GenerationRequest]:  # fmt: skip
    req = translated(responses.parse, body)
    history: tuple[chat.Message, ...] = ()
    if req.previous_response_id is not None:
        found = store.get(req.previous_response_id)
        if found is None:
            raise api_error(responses.unknown_previous(req.previous_response_id, kept=store.describe()))
        history = found
    wire = responses.chat_request(req, history).wire()
    gen = chat_side(parse_chat_request, NAMES, wire, served_name=served_name, limit=limit)
    return Turn(req, history, responses.new_id(), int(time.time())), gen


def response_body(result: Completion, *, turn: Turn, served_name: str, store: ResponseStore) -> dict[str, Any]:
    reply = chat_completion_body(result, rid=turn.rid, served_name=served_name)
    body = translated(responses.response, reply, req=turn.req, rid=turn.rid, created_at=turn.created_at)
    turn.remember(store, body["output"])
    return body


def responses_frames(turn: Turn, *, model: str, store: ResponseStore) -> Frames:
    def frames(handle: StreamHandle, started: StreamStarted, outcome: StreamOutcome) -> Iterator[str]:
        stream = ResponsesStream(turn.req, rid=turn.rid, created_at=turn.created_at)
        for name, data in stream.start():
            yield sse(data, event=name)
        for chunk in chunk_objects(handle, outcome, rid=turn.rid, model=model, chat=True, include_usage=True):
            failed = error_message(chunk)
            events = stream.error(outcome.status, failed) if failed is not None else stream.feed(chunk)
            for name, data in events:
                yield sse(data, event=name)
            if failed is not None:
                return
        for name, data in stream.finish():
            yield sse(data, event=name)
        turn.remember(store, stream.output)

    return frames
