"""OpenAI Responses request bodies as pydantic models: what this translator serves.

Strict: unknown keys are refused by name. Input items and parts of a kind no engine here can
serve (images, files, audio, reasoning items, item references), hosted tools (web_search,
file_search, computer use, code interpreter, MCP, ...), ``reasoning`` settings and background
runs are refused with a message that names them. ``id`` and ``status`` on items sent back from
an earlier response are identifiers: accepted, with nothing to do. ``prompt_cache_key`` is a
caching hint (a prefix-caching engine caches without it).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from surfaces.errors import refuse

TAGS = frozenset({"message", "function_call", "function_call_output", "input_text", "output_text", "function",
                  "text", "json_object", "json_schema", "allowed_tools"})  # fmt: skip
SERVED_ITEMS = ("message", "function_call", "function_call_output")
SERVED_PARTS = ("input_text", "output_text")
HOSTED_WHY = "only function tools are served (no hosted tools here)"


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)


class TextPart(_Strict):
    type: Literal["input_text", "output_text"]
    text: str
    annotations: list[Any] | None = None  # on output_text sent back: what a reply carried, nothing to honour
    logprobs: list[Any] | None = None


def _parts(value: Any) -> Any:
    if isinstance(value, str):
        return [{"type": "input_text", "text": value}]
    if isinstance(value, list):
        for i, part in enumerate(value):
            kind = part.get("type") if isinstance(part, dict) else None
            if isinstance(kind, str) and kind not in SERVED_PARTS:
                raise refuse(f"{kind!r} parts are not served (this server is text-only: send input_text)",
                             at=f"[{i}].type")  # fmt: skip
    return value


Parts = Annotated[list[TextPart], BeforeValidator(_parts)]


class MessageItem(_Strict):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: Parts
    id: str | None = None
    status: str | None = None

    def text(self) -> str:
        return "\n".join(part.text for part in self.content)


class FunctionCallItem(_Strict):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(_Strict):
    type: Literal["function_call_output"]
    call_id: str
    output: Parts
    id: str | None = None
    status: str | None = None

    def text(self) -> str:
        return "\n".join(part.text for part in self.output)


Item = Annotated[MessageItem | FunctionCallItem | FunctionCallOutputItem, Field(discriminator="type")]


def _items(value: Any) -> Any:
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if isinstance(value, list):
        out = []
        for i, item in enumerate(value):
            if isinstance(item, dict) and "type" not in item and "role" in item:
                item = {**item, "type": "message"}  # an "easy" message: role and content only
            kind = item.get("type") if isinstance(item, dict) else None
            if isinstance(kind, str) and kind not in SERVED_ITEMS:
                raise refuse(f"{kind!r} items are not served (send messages, function_call and function_call_output)",
                             at=f"[{i}].type")  # fmt: skip
            out.append(item)
        return out
    return value


class FunctionTool(_Strict):
    type: Literal["function"]
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


def _tools(value: Any) -> Any:
    if isinstance(value, list):
        for i, tool in enumerate(value):
            kind = tool.get("type") if isinstance(tool, dict) else None
            if isinstance(kind, str) and kind != "function":
                raise refuse(f"{kind!r} tools are not served: {HOSTED_WHY}", at=f"[{i}].type")
    return value


class NamedFunction(_Strict):
    type: Literal["function"]
    name: str


class AllowedTools(_Strict):
    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: Annotated[list[NamedFunction], Field(min_length=1)]


def _tool_choice(value: Any) -> Any:
    kind = value.get("type") if isinstance(value, dict) else None
    if isinstance(kind, str) and kind not in ("function", "allowed_tools"):
        raise refuse(f"{kind!r} tool choices are not served: {HOSTED_WHY}", at="type")
    return value


ToolChoice = Annotated[Literal["auto", "none", "required"] | NamedFunction | AllowedTools, BeforeValidator(_tool_choice)]


class FormatText(_Strict):
    type: Literal["text"]


class FormatJsonObject(_Strict):
    type: Literal["json_object"]


class FormatJsonSchema(_Strict):
    model_config = ConfigDict(populate_by_name=True)

    type: Literal["json_schema"]
    name: str
    schema_: dict[str, Any] = Field(alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextConfig(_Strict):
    format: Annotated[FormatText | FormatJsonObject | FormatJsonSchema, Field(discriminator="type")] | None = None


class ResponsesRequest(_Strict):
    """``POST /v1/responses``."""

    route: ClassVar[str] = "/v1/responses"

    model: str
    input: Annotated[Annotated[list[Item], Field(min_length=1)], BeforeValidator(_items)]
    instructions: str | None = None
    max_output_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    tools: Annotated[list[FunctionTool], BeforeValidator(_tools)] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    stream: bool | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    metadata: Annotated[dict[str, Annotated[str, Field(max_length=512)]], Field(max_length=16)] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    # Accepted only as the no-op values clients send by default; anything else is refused by name.
    reasoning: dict[str, None] | None = None  # {"effort": null}: the default, nothing to do
    include: Annotated[list[Any], Field(max_length=0)] | None = None
    truncation: Literal["disabled"] | None = None
    background: Literal[False] | None = None

    @model_validator(mode="before")
    @classmethod
    def _name_the_unserved(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        why = {
            "reasoning": "reasoning settings are not served (these engines have no reasoning effort); leave it out",
            "include": "nothing extra can be included (no reasoning, logprobs or hosted-tool outputs here); send []",
            "truncation": "truncation 'auto' is not served: a prompt too long for the context is a 400",
            "background": "background runs are not served; send the request and wait for it (or stream it)",
        }
        for key, reason in why.items():
            value = data.get(key)
            unset = value in (None, [], "disabled", False) or (isinstance(value, dict) and not any(value.values()))
            if not unset or (key == "reasoning" and not isinstance(value, dict | None)):
                raise refuse(reason, at=key)
        return data
