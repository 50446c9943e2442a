"""``POST /v1/messages`` and ``/v1/messages/count_tokens``, served natively through the shared
translator (``surfaces.anthropic``): the Messages request -> a chat request -> this server's chat
path (the same validation, tools, constraints and engine) -> the chat result or chunks -> the
Message or its events. Refusals leave in Anthropic's error shape (http/app.py)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from backends.builtin_server.api.openai_chat import chat_completion_body, parse_chat_request
from backends.builtin_server.api.openai_stream import chunk_objects
from backends.builtin_server.api.sse import Frames, StreamOutcome, sse
from backends.builtin_server.api.surface_common import chat_side, error_message, translated
from backends.builtin_server.engine.jobs import Completion, StreamHandle, StreamStarted
from backends.builtin_server.engine.request import GenerationRequest
from surfaces import anthropic
from surfaces.anthropic_stream import MessagesStream
from surfaces.anthropic_wire import MessagesRequest

# Chat fields a chat-side refusal may name, as this surface calls them.
NAMES = {"stop": "stop_sequences", "response_format": "tools", "user": "metadata.user_id"}


def parse_messages_request(body: Mapping[str, Any], *, served_name: str,
                           limit: int) -> tuple[MessagesRequest, GenerationRequest]:  # fmt: skip
    req = translated(anthropic.parse, body)
    chat = anthropic.chat_request(req).wire()
    return req, chat_side(parse_chat_request, NAMES, chat, served_name=served_name, limit=limit)


def parse_count_request(body: Mapping[str, Any], *, served_name: str, limit: int) -> GenerationRequest:
    req = translated(anthropic.parse_count, body)
    chat = anthropic.count_request(req).wire()
    return chat_side(parse_chat_request, NAMES, chat, served_name=served_name, limit=limit)


def message_body(result: Completion, *, req: MessagesRequest, rid: str, served_name: str) -> dict[str, Any]:
    return translated(anthropic.message, chat_completion_body(result, rid=rid, served_name=served_name), req=req)


def messages_frames(req: MessagesRequest, *, rid: str, model: str) -> Frames:
    def frames(handle: StreamHandle, started: StreamStarted, outcome: StreamOutcome) -> Iterator[str]:
        stream = MessagesStream(req, chat_id=rid, input_tokens=started.prompt_tokens)
        for name, data in stream.start():
            yield sse(data, event=name)
        for chunk in chunk_objects(handle, outcome, rid=rid, model=model, chat=True, include_usage=True):
            failed = error_message(chunk)
            events = stream.error(outcome.status, failed) if failed is not None else stream.feed(chunk)
            for name, data in events:
                yield sse(data, event=name)
            if failed is not None:
                return
        for name, data in stream.finish():
            yield sse(data, event=name)

    return frames
