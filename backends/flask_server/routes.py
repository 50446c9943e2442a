"""The routes: translate HTTP to a :class:`GenerationRequest` and the engine's results to wire shapes.

No handler touches the model or the tokenizer; they validate (protocol.py), hand the request to
the engine from app state and wait. Errors are raised, and become JSON in app.py's handlers.
"""

from __future__ import annotations

import time
import uuid

from flask import Blueprint, Response, g, request

from backends.flask_server import protocol
from backends.flask_server.generation import GenerationRequest
from backends.flask_server.jobs import Choice, Completion
from backends.flask_server.logprobs import chat_logprobs, completion_logprobs
from backends.flask_server.metrics import CONTENT_TYPE
from backends.flask_server.state import ServerState, current_state, json_response
from backends.flask_server.streaming import stream_response

api = Blueprint("modelserve", __name__)

# For the 404 body: a client that got a path wrong learns the right one.
ROUTES_HELP = "POST /llm/, POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health, GET /metrics"


# ----------------------------------------------------------------------------- plain routes


@api.get("/health")
def health() -> Response:
    state = current_state()
    if not state.engine.alive():
        return json_response({"status": "unavailable", "model": state.served_name}, 503)
    return json_response({"status": "ok", "model": state.served_name})


@api.get("/v1/models")
def models() -> Response:
    state = current_state()
    card = {"id": state.served_name, "object": "model", "created": state.created, "owned_by": "modelserve"}
    return json_response({"object": "list", "data": [card]})


@api.get("/metrics")
def prometheus() -> Response:
    return Response(current_state().engine.metrics.render(), content_type=CONTENT_TYPE)


# ----------------------------------------------------------------------------- generation


def _complete(state: ServerState, req: GenerationRequest) -> Completion:
    result = state.engine.submit(req).result()
    g.prompt_tokens, g.completion_tokens = result.prompt_tokens, result.completion_tokens
    return result


def _usage(result: Completion) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


@api.post("/llm/")
def llm() -> Response:
    state = current_state()
    body = protocol.parse_json_object(request.get_data())
    req = protocol.parse_llm_request(body, limit=state.engine.limit, defaults=state.engine.defaults)
    result = _complete(state, req)
    usage = _usage(result)
    # AgentScope's post_api_chat envelope (reference §1.2), with honest token counts.
    response = {
        "choices": [{"message": {"role": "assistant", "content": result.text}}],
        "created": int(time.time()),
        "id": f"llm-{uuid.uuid4().hex}",
        "model": state.served_name,
        "object": "text_completion",
        "usage": usage,
    }
    data = {
        "completion_tokens": result.completion_tokens,
        "messages": {},
        "prompt_tokens": result.prompt_tokens,
        "response": response,
        "total_tokens": usage["total_tokens"],
        "username": "",
    }
    return json_response({"data": data})


@api.post("/v1/chat/completions")
def chat_completions() -> Response:
    state = current_state()
    body = protocol.parse_json_object(request.get_data())
    req = protocol.parse_chat_request(body, served_name=state.served_name, limit=state.engine.limit)
    g.user, g.metadata = body.get("user"), body.get("metadata")  # OpenAI's end-user id and tags: logged
    rid = f"chatcmpl-{uuid.uuid4().hex}"
    if req.stream:
        return stream_response(state.engine, req, rid, chat=True, served_name=state.served_name)
    result = _complete(state, req)
    choices = [_chat_choice(i, c) for i, c in enumerate(result.choices)]
    return json_response(_openai_body(state, rid, "chat.completion", choices, result))


def _chat_choice(index: int, choice: Choice) -> dict[str, object]:
    # OpenAI's schema requires `refusal` (a model here never refuses by itself: null).
    message: dict[str, object] = {"role": "assistant", "content": choice.text, "refusal": None}
    if choice.tool_calls:
        message["tool_calls"] = [call.as_openai() for call in choice.tool_calls]
    logprobs = {"content": chat_logprobs(choice.logprobs), "refusal": None} if choice.logprobs is not None else None
    return {"index": index, "message": message, "logprobs": logprobs, "finish_reason": _finish(choice.finish_reason)}


def _finish(reason: str) -> str:
    # A reply cut short because its client went away never reaches that client; say "stop".
    return "stop" if reason == "cancelled" else reason


@api.post("/v1/completions")
def completions() -> Response:
    state = current_state()
    body = protocol.parse_json_object(request.get_data())
    req = protocol.parse_completion_request(body, served_name=state.served_name, limit=state.engine.limit)
    g.user, g.metadata = body.get("user"), body.get("metadata")
    rid = f"cmpl-{uuid.uuid4().hex}"
    if req.stream:
        return stream_response(state.engine, req, rid, chat=False, served_name=state.served_name)
    result = _complete(state, req)
    choices: list[dict[str, object]] = [{"index": i, "text": c.text or "", "finish_reason": _finish(c.finish_reason),
                "logprobs": completion_logprobs(c.logprobs) if c.logprobs is not None else None}
               for i, c in enumerate(result.choices)]  # fmt: skip
    return json_response(_openai_body(state, rid, "text_completion", choices, result))


def _openai_body(
    state: ServerState, rid: str, obj: str, choices: list[dict[str, object]], result: Completion
) -> dict[str, object]:
    return {
        "id": rid,
        "object": obj,
        "created": int(time.time()),
        "model": state.served_name,
        "choices": choices,
        "usage": _usage(result),
    }
