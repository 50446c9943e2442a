"""The routes: one thin handler per endpoint. Each parses the body (api/), hands the request to
the engine from app state and writes the surface's answer; errors are raised and become JSON in
app.py's handlers. No handler touches the model or the tokenizer."""

from __future__ import annotations

import uuid
from typing import cast

from flask import Blueprint, Response, g, request

from backends.builtin_server.api.anthropic_messages import (
    message_body,
    messages_frames,
    parse_count_request,
    parse_messages_request,
)
from backends.builtin_server.api.body import parse_json_object
from backends.builtin_server.api.embeddings import embeddings_body, parse_embeddings_request
from backends.builtin_server.api.llm import llm_envelope, parse_llm_request
from backends.builtin_server.api.openai_chat import chat_completion_body, parse_chat_request
from backends.builtin_server.api.openai_completions import completion_body, parse_completion_request
from backends.builtin_server.api.openai_responses import parse_responses_request, response_body, responses_frames
from backends.builtin_server.api.openai_stream import openai_frames
from backends.builtin_server.api.rerank import parse_rerank_request, rerank_body
from backends.builtin_server.engine.encoders import TextEncoder
from backends.builtin_server.engine.jobs import Completion
from backends.builtin_server.engine.metrics import CONTENT_TYPE
from backends.builtin_server.engine.request import GenerationRequest
from backends.builtin_server.errors import ApiError
from backends.builtin_server.http.state import ServerState, current_state, json_response
from backends.builtin_server.http.streaming import stream_response

api = Blueprint("modelserve", __name__)

# For the 404 body: a client that got a path wrong learns the right one.
ROUTES_HELP = ("POST /llm/, POST /v1/chat/completions, POST /v1/completions, POST /v1/messages, "
               "POST /v1/messages/count_tokens, POST /v1/responses, POST /v1/embeddings, POST /v1/rerank, "
               "GET /v1/models, GET /health, GET /metrics, GET /modelserve/requests")


@api.get("/health")
def health() -> Response:
    state = current_state()
    if not state.runner.alive():
        return json_response({"status": "unavailable", "model": state.served_name}, 503)
    return json_response({"status": "ok", "model": state.served_name})


@api.get("/v1/models")
def models() -> Response:
    state = current_state()
    card = {"id": state.served_name, "object": "model", "created": state.created, "owned_by": "modelserve"}
    return json_response({"object": "list", "data": [card]})


@api.get("/metrics")
def prometheus() -> Response:
    return Response(current_state().runner.metrics.render(), content_type=CONTENT_TYPE)


@api.get("/modelserve/requests")
def recent_requests() -> Response:
    """Summaries of the last answered requests (the dashboard's table): ``?after=ID`` for newer ones."""
    after = request.args.get("after", "0")
    if not after.isdigit():
        raise ApiError(400, f"after must be a request id (a whole number >= 0), not {after!r}", param="after")
    return json_response(current_state().recent.page(int(after)))


def _complete(state: ServerState, req: GenerationRequest) -> Completion:
    result = state.engine.submit(req).result()
    g.prompt_tokens, g.completion_tokens, g.cached_tokens = result.prompt_tokens, result.completion_tokens, result.cached_tokens
    return result


@api.post("/llm/")
def llm() -> Response:
    state = current_state()
    body = parse_json_object(request.get_data())
    req = parse_llm_request(body, limit=state.engine.limit, defaults=state.engine.defaults)
    return json_response(llm_envelope(_complete(state, req), served_name=state.served_name))


@api.post("/v1/chat/completions")
def chat_completions() -> Response:
    state = current_state()
    body = parse_json_object(request.get_data())
    req = parse_chat_request(body, served_name=state.served_name, limit=state.engine.limit)
    g.user, g.metadata = body.get("user"), body.get("metadata")  # OpenAI's end-user id and tags: logged
    rid = f"chatcmpl-{uuid.uuid4().hex}"
    if req.stream:
        frames = openai_frames(rid=rid, model=state.served_name, chat=True, include_usage=req.include_usage)
        return stream_response(state.engine, req, frames)
    return json_response(chat_completion_body(_complete(state, req), rid=rid, served_name=state.served_name))


@api.post("/v1/completions")
def completions() -> Response:
    state = current_state()
    body = parse_json_object(request.get_data())
    req = parse_completion_request(body, served_name=state.served_name, limit=state.engine.limit)
    g.user, g.metadata = body.get("user"), body.get("metadata")
    rid = f"cmpl-{uuid.uuid4().hex}"
    if req.stream:
        frames = openai_frames(rid=rid, model=state.served_name, chat=False, include_usage=req.include_usage)
        return stream_response(state.engine, req, frames)
    return json_response(completion_body(_complete(state, req), rid=rid, served_name=state.served_name))


@api.post("/v1/messages")
def messages() -> Response:
    state = current_state()
    body = parse_json_object(request.get_data())
    req, gen = parse_messages_request(body, served_name=state.served_name, limit=state.engine.limit)
    g.user = req.metadata.user_id if req.metadata else None
    rid = f"chatcmpl-{uuid.uuid4().hex}"
    if gen.stream:
        return stream_response(state.engine, gen, messages_frames(req, rid=rid, model=state.served_name))
    return json_response(message_body(_complete(state, gen), req=req, rid=rid, served_name=state.served_name))


@api.post("/v1/messages/count_tokens")
def count_tokens() -> Response:
    # A one-token generation of the same conversation: usage.prompt_tokens is the count the
    # chat template, the tools and this tokenizer really give.
    state = current_state()
    body = parse_json_object(request.get_data())
    gen = parse_count_request(body, served_name=state.served_name, limit=state.engine.limit)
    return json_response({"input_tokens": _complete(state, gen).prompt_tokens})


@api.post("/v1/responses")
def responses() -> Response:
    state = current_state()
    body = parse_json_object(request.get_data())
    turn, gen = parse_responses_request(body, served_name=state.served_name, limit=state.engine.limit,
                                        store=state.responses)  # fmt: skip
    g.user, g.metadata = turn.req.user or turn.req.safety_identifier, turn.req.metadata
    if gen.stream:
        return stream_response(state.engine, gen, responses_frames(turn, model=state.served_name, store=state.responses))
    result = _complete(state, gen)
    return json_response(response_body(result, turn=turn, served_name=state.served_name, store=state.responses))


@api.post("/v1/embeddings")
def embeddings() -> Response:
    state = current_state()
    engine = state.pooling("embed")
    encoder = cast(TextEncoder, engine.encoder)
    body = parse_json_object(request.get_data())
    call = parse_embeddings_request(body, served_name=state.served_name, size=encoder.dimensions,
                                    matryoshka=encoder.matryoshka)  # fmt: skip
    g.user = body.get("user")
    result = engine.submit(call.inputs).result()
    g.prompt_tokens, g.completion_tokens, g.cached_tokens = sum(result.tokens), 0, 0  # no prefix cache here
    return json_response(embeddings_body(call, result, served_name=state.served_name))


@api.post("/v1/rerank")
@api.post("/rerank")
def rerank() -> Response:
    state = current_state()
    engine = state.pooling("rerank")
    body = parse_json_object(request.get_data())
    call = parse_rerank_request(body, served_name=state.served_name)
    g.user = body.get("user")
    result = engine.submit(call.pairs).result()
    g.prompt_tokens, g.completion_tokens, g.cached_tokens = sum(result.tokens), 0, 0  # no prefix cache here
    return json_response(rerank_body(call, result, served_name=state.served_name))
