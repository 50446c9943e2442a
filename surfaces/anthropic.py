"""Anthropic Messages <-> Chat Completions: requests, responses, errors (streams: anthropic_stream).

    POST /v1/messages               -> chat_request(parse(body)) -> engine -> message(chat, ...)
    POST /v1/messages/count_tokens  -> count_request(...) (a 1-token chat) -> count(chat)

Mapping decisions, each honouring the field rather than dropping it:
- ``system`` (string or text blocks) becomes the first, system, message; text blocks of one turn
  are joined with a newline (as vLLM joins text parts);
- ``tool_result`` blocks become ``tool`` messages (in their order, before the turn's text);
  ``is_error`` prefixes the result with "Error: " so the model reads it as a failure;
- ``tool_use`` blocks become the assistant's ``tool_calls`` (``input`` as JSON text);
- ``tool_choice`` auto/any/tool/none -> auto/required/a named function/none;
  ``disable_parallel_tool_use`` -> ``parallel_tool_calls: false``;
- ``metadata.user_id`` -> ``user``; ``stop_sequences`` -> ``stop``; ``top_k`` -> vLLM's ``top_k``;
- ``stop_reason``: ``tool_calls`` -> tool_use, ``length`` -> max_tokens, ``stop`` -> stop_sequence
  when the engine names the stop string that ended the reply (vLLM and the built-in server do, as
  ``stop_reason``), else end_turn.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from surfaces import chat
from surfaces.anthropic_wire import TAGS, CountTokensRequest, MessageParam, MessagesRequest, TextBlock, ToolResultBlock
from surfaces.errors import SurfaceError, validate

__all__ = ["TAGS", "chat_request", "count", "count_request", "error_body", "message", "parse", "parse_count"]

# The error types the SDK's ErrorResponse knows (anthropic.types.shared.ErrorType), by status; a
# 413 is an invalid request there (Anthropic's docs name a request_too_large the SDK cannot parse).
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 408: "timeout_error", 413: "invalid_request_error", 429: "rate_limit_error",
               503: "overloaded_error", 529: "overloaded_error"}  # fmt: skip


def parse(body: Mapping[str, Any]) -> MessagesRequest:
    return validate(MessagesRequest, body, route=MessagesRequest.route, tags=TAGS)


def parse_count(body: Mapping[str, Any]) -> CountTokensRequest:
    return validate(CountTokensRequest, body, route=CountTokensRequest.route, tags=TAGS)


def _text(blocks: list[TextBlock] | None) -> str:
    return "\n".join(block.text for block in blocks or ())


def _turn(msg: MessageParam) -> list[chat.Message]:
    texts = [b.text for b in msg.content if isinstance(b, TextBlock)]
    if msg.role == "assistant":
        calls = [chat.ToolCall(id=b.id, function=chat.FunctionCall(name=b.name, arguments=_json(b.input)))
                 for b in msg.content if b.type == "tool_use"]  # fmt: skip
        return [chat.Message(role="assistant", content="\n".join(texts) if texts or not calls else None,
                             tool_calls=calls or None)]  # fmt: skip
    out = [chat.Message(role="tool", tool_call_id=b.tool_use_id, content=("Error: " if b.is_error else "") + b.text())
           for b in msg.content if isinstance(b, ToolResultBlock)]  # fmt: skip
    if texts or not out:
        out.append(chat.Message(role="user", content="\n".join(texts)))
    return out


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _conversation(req: MessagesRequest | CountTokensRequest) -> chat.Request:
    messages = [chat.Message(role="system", content=_text(req.system))] if req.system else []
    for msg in req.messages:
        messages.extend(_turn(msg))
    tools = [chat.Tool(function=chat.FunctionDef(name=t.name, description=t.description, parameters=t.input_schema,
                                                 strict=t.strict)) for t in req.tools or ()]  # fmt: skip
    choice: Any = None
    parallel = None
    if req.tool_choice is not None:
        kind = req.tool_choice.type
        choice = {"auto": "auto", "any": "required", "none": "none"}.get(kind)
        if kind == "tool":
            choice = chat.NamedToolChoice(function=chat.NamedFunction(name=getattr(req.tool_choice, "name", "")))
        if getattr(req.tool_choice, "disable_parallel_tool_use", None):
            parallel = False
    return chat.Request(model=req.model, messages=messages, tools=tools or None, tool_choice=choice,
                        parallel_tool_calls=parallel)  # fmt: skip


def chat_request(req: MessagesRequest) -> chat.Request:
    base = _conversation(req)
    return base.model_copy(update={
        "max_tokens": req.max_tokens, "temperature": req.temperature, "top_p": req.top_p, "top_k": req.top_k,
        "stop": list(req.stop_sequences) if req.stop_sequences else None, "stream": True if req.stream else None,
        "stream_options": {"include_usage": True} if req.stream else None,
        "user": req.metadata.user_id if req.metadata else None,
    })  # fmt: skip


def count_request(req: CountTokensRequest) -> chat.Request:
    """A one-token generation whose ``usage.prompt_tokens`` is the count: the engine renders the
    conversation with its own chat template and tools, exactly as a real request would be."""
    return _conversation(req).model_copy(update={"max_tokens": 1, "temperature": 0.0})


def count(reply: Mapping[str, Any]) -> dict[str, int]:
    usage = chat.Response.model_validate(reply).usage
    return {"input_tokens": usage.prompt_tokens if usage else 0}


def stop_reason(finish: str | None, stop: str | int | None, stop_sequences: list[str] | None, *,
                called: bool = False) -> tuple[str, str | None]:  # fmt: skip
    """Chat's finish_reason (plus the engine's matched stop, if it says) -> (stop_reason, stop_sequence).

    ``called``: the reply holds whole tool calls. That is tool_use whatever the finish says: vLLM
    holds a forced call to its grammar, which admits trailing whitespace, and reports "length"
    for a call that is complete."""
    if finish == "tool_calls" or called:
        return "tool_use", None
    if finish == "length":
        return "max_tokens", None
    if isinstance(stop, str) and stop in (stop_sequences or ()):
        return "stop_sequence", stop
    return "end_turn", None


def tool_input(name: str | None, arguments: str | None) -> dict[str, Any]:
    value = chat.arguments_object(arguments)
    if value is None:
        raise SurfaceError(502, f"the engine called {name!r} with arguments that are not a JSON object: "
                                f"{(arguments or '')[:200]!r}", code="bad_tool_arguments")  # fmt: skip
    return value


def usage(u: chat.Usage | None) -> dict[str, int]:
    if u is None:
        return {"input_tokens": 0, "output_tokens": 0}
    # Anthropic counts cached prompt tokens apart from input_tokens (they add up to the prompt).
    return {"input_tokens": u.prompt_tokens - u.cached, "cache_read_input_tokens": u.cached,
            "output_tokens": u.completion_tokens}  # fmt: skip


def message_id(chat_id: str = "") -> str:
    return "msg_" + (chat_id.removeprefix("chatcmpl-") or uuid.uuid4().hex)


def message(reply: Mapping[str, Any], *, req: MessagesRequest) -> dict[str, Any]:
    """A chat.completion -> the Message object."""
    parsed = chat.Response.model_validate(reply)
    if not parsed.choices:
        raise SurfaceError(502, "the engine's reply has no choices", code="bad_upstream")
    choice = parsed.choices[0]
    # A call cut off by max_tokens is no call: it is left out, and stop_reason says max_tokens.
    calls = [c for c in choice.message.tool_calls or ()
             if choice.finish_reason != "length" or chat.arguments_object(c.function.arguments) is not None]  # fmt: skip
    content: list[dict[str, Any]] = []
    if choice.message.content or not calls:
        content.append({"type": "text", "text": choice.message.content or ""})
    for call in calls:
        content.append({"type": "tool_use", "id": call.id or f"toolu_{uuid.uuid4().hex[:24]}",
                        "name": call.function.name or "", "input": tool_input(call.function.name,
                                                                               call.function.arguments)})  # fmt: skip
    reason, sequence = stop_reason(choice.finish_reason, choice.stop_reason, req.stop_sequences, called=bool(calls))
    return {"id": message_id(parsed.id), "type": "message", "role": "assistant", "model": req.model,
            "content": content, "stop_reason": reason, "stop_sequence": sequence, "usage": usage(parsed.usage)}  # fmt: skip


def error_body(status: int, message: str) -> dict[str, Any]:
    """Anthropic's error shape; the type follows the status as Anthropic's API assigns it."""
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def error_from_chat(status: int, body: Any) -> dict[str, Any]:
    """An engine's OpenAI-shaped error -> the same refusal in Anthropic's shape."""
    return error_body(status, chat.error_message(body, status))
