"""OpenAI Responses <-> Chat Completions: requests, the response object, errors (streams:
responses_stream; ``previous_response_id``: store).

    POST /v1/responses -> chat_request(parse(body), history) -> engine -> response(chat, ...)

Mapping decisions:
- ``input`` (a string or items) and ``instructions`` (the first, system, message) become chat
  messages; ``developer`` is ``system``; consecutive ``function_call`` items become one assistant
  turn's ``tool_calls``; ``function_call_output`` becomes a ``tool`` message;
- ``max_output_tokens`` -> ``max_tokens``; ``text.format`` -> ``response_format`` (json_schema
  held to its schema as Chat's is); ``tool_choice`` as Chat's, and ``allowed_tools`` narrows the
  tools offered to the ones it lists (mode ``required``: one of them must be called);
- ``user`` (else ``safety_identifier``) -> ``user``; ``metadata`` is echoed on the response;
- ``status`` is ``incomplete`` (``max_output_tokens``) when the reply hit its budget.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from surfaces import chat
from surfaces.errors import SurfaceError, validate
from surfaces.responses_wire import (
    TAGS,
    AllowedTools,
    FormatJsonObject,
    FormatJsonSchema,
    FunctionCallItem,
    FunctionCallOutputItem,
    MessageItem,
    NamedFunction,
    ResponsesRequest,
)

__all__ = ["TAGS", "chat_request", "conversation", "error_body", "new_id", "output_items", "parse", "response_object"]


def parse(body: Mapping[str, Any]) -> ResponsesRequest:
    return validate(ResponsesRequest, body, route=ResponsesRequest.route, tags=TAGS)


def new_id() -> str:
    return f"resp_{uuid.uuid4().hex}"


def conversation(req: ResponsesRequest, history: Sequence[chat.Message] = ()) -> list[chat.Message]:
    """The earlier turns (from ``previous_response_id``) and this input, as chat messages."""
    out = list(history)
    for item in req.input:
        if isinstance(item, MessageItem):
            role = "system" if item.role == "developer" else item.role
            out.append(chat.Message(role=role, content=item.text()))
        elif isinstance(item, FunctionCallItem):
            call = chat.ToolCall(id=item.call_id, function=chat.FunctionCall(name=item.name, arguments=item.arguments))
            last = out[-1] if out else None
            if last is not None and last.role == "assistant" and last.tool_calls is not None:
                last.tool_calls.append(call)  # one turn's calls travel together
            else:
                out.append(chat.Message(role="assistant", tool_calls=[call]))
        elif isinstance(item, FunctionCallOutputItem):
            out.append(chat.Message(role="tool", tool_call_id=item.call_id, content=item.text()))
    return out


def _tools(req: ResponsesRequest) -> tuple[list[chat.Tool] | None, Any]:
    tools = [chat.Tool(function=chat.FunctionDef(name=t.name, description=t.description, parameters=t.parameters,
                                                 strict=t.strict)) for t in req.tools or ()]  # fmt: skip
    choice = req.tool_choice
    if isinstance(choice, AllowedTools):
        allowed = {t.name for t in choice.tools}
        unknown = sorted(allowed - {t.function.name for t in tools})
        if unknown:
            raise SurfaceError(400, f"tool_choice.tools names {unknown}, which are not among the tools", param="tool_choice")
        tools = [t for t in tools if t.function.name in allowed]
        return tools, choice.mode
    if isinstance(choice, NamedFunction):
        return tools or None, chat.NamedToolChoice(function=chat.NamedFunction(name=choice.name))
    return tools or None, choice


def _format(req: ResponsesRequest) -> chat.ResponseFormat | None:
    fmt = req.text.format if req.text else None
    if isinstance(fmt, FormatJsonSchema):
        spec = chat.JsonSchema(name=fmt.name, schema=fmt.schema_, description=fmt.description, strict=fmt.strict)
        return chat.ResponseFormat(type="json_schema", json_schema=spec)
    if isinstance(fmt, FormatJsonObject):
        return chat.ResponseFormat(type="json_object")
    return None


def chat_request(req: ResponsesRequest, history: Sequence[chat.Message] = ()) -> chat.Request:
    messages = conversation(req, history)
    if req.instructions:
        messages.insert(0, chat.Message(role="system", content=req.instructions))
    tools, choice = _tools(req)
    return chat.Request(
        model=req.model, messages=messages, max_tokens=req.max_output_tokens, temperature=req.temperature,
        top_p=req.top_p, stream=True if req.stream else None,
        stream_options={"include_usage": True} if req.stream else None, user=req.user or req.safety_identifier,
        tools=tools, tool_choice=choice, parallel_tool_calls=req.parallel_tool_calls, response_format=_format(req),
    )  # fmt: skip


# ----------------------------------------------------------------------------- the response object


def message_item(text: str, *, item_id: str | None = None, status: str = "completed") -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"type": "message", "id": item_id or f"msg_{uuid.uuid4().hex}", "status": status, "role": "assistant",
            "content": [part] if status == "completed" or text else []}  # fmt: skip


def call_item(call_id: str, name: str, arguments: str, *, item_id: str | None = None,
              status: str = "completed") -> dict[str, Any]:  # fmt: skip
    return {"type": "function_call", "id": item_id or f"fc_{uuid.uuid4().hex}", "call_id": call_id, "name": name,
            "arguments": arguments, "status": status}  # fmt: skip


def whole_calls(choice: chat.Choice) -> list[chat.CallDelta]:
    """The reply's tool calls, less one cut off by the token budget (its arguments do not parse)."""
    return [c for c in choice.message.tool_calls or ()
            if choice.finish_reason != "length" or chat.arguments_object(c.function.arguments) is not None]  # fmt: skip


def output_items(reply: chat.Response) -> list[dict[str, Any]]:
    choice = reply.choices[0]
    calls = whole_calls(choice)
    items = []
    if choice.message.content or not calls:
        items.append(message_item(choice.message.content or ""))
    for call in calls:
        items.append(call_item(call.id or f"call_{uuid.uuid4().hex[:24]}", call.function.name or "",
                               call.function.arguments or "{}"))  # fmt: skip
    return items


def usage(u: chat.Usage | None) -> dict[str, Any]:
    u = u or chat.Usage()
    return {"input_tokens": u.prompt_tokens, "input_tokens_details": {"cached_tokens": u.cached, "cache_write_tokens": 0},
            "output_tokens": u.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": u.prompt_tokens + u.completion_tokens}  # fmt: skip


def response_object(req: ResponsesRequest, *, rid: str, created_at: int, status: str, output: list[dict[str, Any]],
                    usage_: dict[str, Any] | None) -> dict[str, Any]:  # fmt: skip
    """The Response object, echoing what the request set (OpenAI's defaults where it set nothing)."""
    fmt = {"type": "text"}
    if req.text is not None and req.text.format is not None:
        fmt = req.text.format.model_dump(mode="json", by_alias=True, exclude_none=True)
    choice = req.tool_choice
    tools = [{**t.model_dump(mode="json"), "strict": bool(t.strict), "parameters": t.parameters} for t in req.tools or ()]
    body: dict[str, Any] = {
        "id": rid, "object": "response", "created_at": created_at, "status": status,
        "completed_at": int(time.time()) if status in ("completed", "incomplete") else None, "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": req.instructions, "max_output_tokens": req.max_output_tokens, "model": req.model,
        "output": output, "parallel_tool_calls": req.parallel_tool_calls is not False,
        "previous_response_id": req.previous_response_id, "reasoning": {"effort": None, "summary": None},
        "store": req.store is not False, "temperature": 1.0 if req.temperature is None else req.temperature,
        "text": {"format": fmt}, "tools": tools, "top_p": 1.0 if req.top_p is None else req.top_p,
        "tool_choice": choice if isinstance(choice, str) else choice.model_dump(mode="json") if choice else "auto",
        "truncation": "disabled", "metadata": dict(req.metadata or {}),
    }  # fmt: skip
    if usage_ is not None:  # the schema has no null usage: left out while in progress
        body["usage"] = usage_
    if req.user is not None:
        body["user"] = req.user
    return body


def response(reply: Mapping[str, Any], *, req: ResponsesRequest, rid: str, created_at: int) -> dict[str, Any]:
    """A chat.completion -> the Response object."""
    parsed = chat.Response.model_validate(reply)
    if not parsed.choices:
        raise SurfaceError(502, "the engine's reply has no choices", code="bad_upstream")
    # A reply with whole calls is complete even where the engine says "length" (see anthropic.stop_reason).
    cut = parsed.choices[0].finish_reason == "length" and not whole_calls(parsed.choices[0])
    status = "incomplete" if cut else "completed"
    return response_object(req, rid=rid, created_at=created_at, status=status, output=output_items(parsed),
                           usage_=usage(parsed.usage))  # fmt: skip


def as_history(output: Sequence[Mapping[str, Any]]) -> list[chat.Message]:
    """A response's output items as the chat turn they are (for the store)."""
    text = "".join(p["text"] for item in output if item["type"] == "message" for p in item["content"])
    calls = [chat.ToolCall(id=item["call_id"], function=chat.FunctionCall(name=item["name"], arguments=item["arguments"]))
             for item in output if item["type"] == "function_call"]  # fmt: skip
    return [chat.Message(role="assistant", content=text or None if calls else text, tool_calls=calls or None)]


def error_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape (the Responses API answers errors as every OpenAI route does)."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == 401:
        kind = "authentication_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def unknown_previous(response_id: str, *, kept: str) -> SurfaceError:
    """``kept``: how long and how many the store keeps (ResponseStore.describe())."""
    return SurfaceError(400, f"previous_response_id: no stored response {response_id!r} (responses are kept {kept}, "
                             "and never with store: false; send the whole conversation as input instead)",
                        param="previous_response_id", code="previous_response_not_found")  # fmt: skip
