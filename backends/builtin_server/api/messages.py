"""Chat messages as clients send them (OpenAI or AgentScope shape) -> the engine's ChatMessage tuple."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ConfigDict, TypeAdapter, ValidationError

from backends.builtin_server.api.protocol import ChatMessageParam, Messages, ToolCallParam
from backends.builtin_server.api.validation import api_error_from_validation
from backends.builtin_server.engine.request import ChatMessage
from backends.builtin_server.errors import ApiError
from backends.builtin_server.tools.spec import ToolCall, arguments_text

_MESSAGES: TypeAdapter[list[ChatMessageParam]] = TypeAdapter(Messages, config=ConfigDict(strict=True))


def normalize_messages(value: Any, *, field: str = "messages") -> tuple[ChatMessage, ...]:
    """Chat messages in OpenAI or AgentScope shape, validated on their own -> ChatMessage tuple."""
    if value is None:
        return to_chat_messages(None, field=field)
    try:
        params = _MESSAGES.validate_python(value)
    except ValidationError as exc:
        raise api_error_from_validation(exc, prefix=(field,)) from None
    return to_chat_messages(params, field=field)


def to_chat_messages(params: Sequence[ChatMessageParam] | None, *, field: str) -> tuple[ChatMessage, ...]:
    """Validated messages -> what the scheduler renders: text parts joined, developer -> system."""
    if params is None:
        raise ApiError(400, f'{field} is required: a non-empty array of {{"role": ..., "content": ...}} objects')
    out: list[ChatMessage] = []
    for i, msg in enumerate(params):
        if msg.content is None:
            # Only an assistant turn may lack content (it carried tool calls in OpenAI's shape).
            if msg.role != "assistant":
                raise ApiError(400, f"{field}[{i}].content is required: a string or an array of text parts")
            text = ""
        else:
            # vLLM joins text parts with a newline; do the same so prompts match across backends.
            text = "\n".join(part.text for part in msg.content)
        role = "system" if msg.role == "developer" else msg.role
        calls = tuple(_earlier_call(call, f"{field}[{i}].tool_calls[{j}]") for j, call in enumerate(msg.tool_calls or ()))
        out.append(ChatMessage(role=role, content=text, name=msg.name or None, tool_calls=calls,
                               tool_call_id=msg.tool_call_id))  # fmt: skip
    return tuple(out)


def _earlier_call(call: ToolCallParam, where: str) -> ToolCall:
    arguments = arguments_text(call.function.arguments)
    if arguments is None:
        raise ApiError(400, f"{where}.function.arguments must be a JSON object (as text), got {call.function.arguments!r:.80}")
    return ToolCall(call.function.name, arguments, call.id)
