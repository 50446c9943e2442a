"""Chat Completions, the side both surfaces translate to: the request they build and the
response, stream chunk and error they read back. Read leniently (engines add fields of their own;
vLLM's ``stop_reason`` is one worth reading), written with only the fields that are set."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from surfaces.errors import SurfaceError


class _Read(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Write(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ----------------------------------------------------------------------------- the request


class FunctionCall(_Write):
    name: str
    arguments: str


class ToolCall(_Write):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Write):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class FunctionDef(_Write):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Write):
    type: Literal["function"] = "function"
    function: FunctionDef


class NamedFunction(_Write):
    name: str


class NamedToolChoice(_Write):
    type: Literal["function"] = "function"
    function: NamedFunction


class JsonSchema(_Write):
    name: str
    schema_: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


class ResponseFormat(_Write):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchema | None = None


class Request(_Write):
    model: str
    messages: list[Message]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] | None = None
    stream: bool | None = None
    stream_options: dict[str, bool] | None = None
    user: str | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None

    def wire(self) -> dict[str, Any]:
        """The JSON body: only what the surface's request set (an engine's defaults stay its own)."""
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)


# ----------------------------------------------------------------------------- what comes back


class CallFunction(_Read):
    name: str | None = None
    arguments: str | None = None


class CallDelta(_Read):
    index: int = 0
    id: str | None = None
    function: CallFunction = Field(default_factory=CallFunction)


class ReplyMessage(_Read):
    content: str | None = None
    tool_calls: list[CallDelta] | None = None


class Choice(_Read):
    index: int = 0
    message: ReplyMessage = Field(default_factory=ReplyMessage)
    finish_reason: str | None = None
    stop_reason: str | int | None = None  # vLLM and the built-in server: the stop string that ended it


class PromptDetails(_Read):
    cached_tokens: int | None = None


class Usage(_Read):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_tokens_details: PromptDetails | None = None

    @property
    def cached(self) -> int:
        return (self.prompt_tokens_details.cached_tokens or 0) if self.prompt_tokens_details else 0


class Response(_Read):
    id: str = ""
    choices: list[Choice] = Field(default_factory=list)
    usage: Usage | None = None


class Delta(_Read):
    content: str | None = None
    tool_calls: list[CallDelta] | None = None


class ChunkChoice(_Read):
    index: int = 0
    delta: Delta = Field(default_factory=Delta)
    finish_reason: str | None = None
    stop_reason: str | int | None = None


class Chunk(_Read):
    choices: list[ChunkChoice] = Field(default_factory=list)
    usage: Usage | None = None


class ErrorDetail(_Read):
    message: str = "the engine failed"
    type: str | None = None
    code: str | int | None = None


def error_message(body: Any, status: int) -> str:
    """The message of an engine's error body (OpenAI's ``{"error": {...}}``, FastChat's
    ``{"message": ...}`` or, inside a stream, ``{"text": ..., "error_code": N}``), whatever its shape."""
    if isinstance(body, dict) and body.get("error_code") and isinstance(body.get("text"), str):
        return str(body["text"])
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
        if isinstance(body.get("detail"), str):  # FastAPI's own 4xx
            return str(body["detail"])
    text = json.dumps(body) if not isinstance(body, str) else body
    return f"the engine answered HTTP {status}: {text[:300]}"


def is_error(obj: Any) -> bool:
    """A stream's late failure instead of a chunk: OpenAI's ``{"error": ...}``, FastChat's ``error_code``."""
    return isinstance(obj, dict) and ("error" in obj or bool(obj.get("error_code")))


FORCED = "this deployment's engine has no tool calling (it would answer in text instead); leave tool_choice out"


def without_tools(req: Request, *, choice_field: str = "tool_choice") -> Request:
    """The request for an engine without tool calling (FastChat): a choice that forces a call is
    refused; earlier calls and their results become text the model can read; the tools (which
    such an engine ignores) are left out, so no call can come."""
    if req.tool_choice not in (None, "auto", "none"):
        raise SurfaceError(400, f"{choice_field}: {FORCED}", param=choice_field)
    messages = []
    for msg in req.messages:
        if msg.role == "tool":
            messages.append(Message(role="user", content=f"[result of tool call {msg.tool_call_id}]\n{msg.content or ''}"))
        elif msg.tool_calls:
            calls = "\n".join(f"[tool call {c.id}: {c.function.name}({c.function.arguments})]" for c in msg.tool_calls)
            messages.append(Message(role="assistant", content="\n".join(filter(None, [msg.content, calls]))))
        else:
            messages.append(Message(role=msg.role, content=msg.content or ""))
    return req.model_copy(update={"messages": messages, "tools": None, "tool_choice": None, "parallel_tool_calls": None})


UNSHAPED = "this deployment's engine cannot hold a reply to a format (it would answer in free text); leave it out"


def without_format(req: Request, *, field: str) -> Request:
    """The request for an engine without structured output (FastChat): a format is refused by name."""
    if req.response_format is not None and req.response_format.type != "text":
        raise SurfaceError(400, f"{field}: {UNSHAPED}", param=field)
    return req.model_copy(update={"response_format": None})


def arguments_object(arguments: str | None) -> dict[str, Any] | None:
    """A call's arguments as the object they must be, or None when they are not one."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
