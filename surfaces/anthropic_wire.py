"""Anthropic Messages request bodies as pydantic models: what this translator serves.

Strict like the API: unknown keys are refused by name, a boolean is not a number. A block or tool
of a kind no engine here can serve (images, documents, thinking, server tools such as
web_search) is refused with a message that names it, before the model would see a half-request.
``cache_control`` is accepted wherever Anthropic allows it: a caching hint that changes no
reply (engines that cache prefixes do so without being asked).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from surfaces.errors import refuse

TEXT_ONLY = "this server is text-only: send text, tool_use and tool_result blocks"
SERVED_BLOCKS: dict[str, tuple[str, ...]] = {"user": ("text", "tool_result"), "assistant": ("text", "tool_use")}
# Discriminator values pydantic puts in an error's location; the field paths leave them out.
TAGS = frozenset({"text", "tool_use", "tool_result", "auto", "any", "tool", "none"})


def _as_blocks(value: Any) -> Any:
    # One shape after validation: a string is a single text block (it means the same).
    return [{"type": "text", "text": value}] if isinstance(value, str) else value


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)


class CacheControl(_Strict):
    type: Literal["ephemeral"]
    ttl: Literal["5m", "1h"] | None = None


class TextBlock(_Strict):
    type: Literal["text"]
    text: str
    cache_control: CacheControl | None = None
    citations: Annotated[list[Any], Field(max_length=0)] | None = None  # only an empty list: none are served


class ToolUseBlock(_Strict):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]
    cache_control: CacheControl | None = None


class ToolResultBlock(_Strict):
    type: Literal["tool_result"]
    tool_use_id: str
    content: Annotated[list[TextBlock], BeforeValidator(_as_blocks)] | None = None
    is_error: bool | None = None
    cache_control: CacheControl | None = None

    def text(self) -> str:
        return "\n".join(block.text for block in self.content or ())


Block = Annotated[TextBlock | ToolUseBlock | ToolResultBlock, Field(discriminator="type")]


class MessageParam(_Strict):
    role: Literal["user", "assistant"]
    content: Annotated[list[Block], BeforeValidator(_as_blocks)]

    @model_validator(mode="before")
    @classmethod
    def _served_blocks(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("content"), list):
            return data
        allowed = SERVED_BLOCKS.get(str(data.get("role")), ("text",))
        for i, block in enumerate(data["content"]):
            kind = block.get("type") if isinstance(block, dict) else None
            if isinstance(kind, str) and kind not in allowed:
                if kind in ("text", "tool_use", "tool_result"):
                    raise refuse(f"a {data.get('role')} turn cannot hold {kind} blocks (user: text and tool_result; "
                                 "assistant: text and tool_use)", at=f"content[{i}].type")  # fmt: skip
                raise refuse(f"{kind!r} blocks are not served ({TEXT_ONLY})", at=f"content[{i}].type")
        return data


class Metadata(_Strict):
    user_id: str | None = None


class ToolParam(_Strict):
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,128}$")]
    input_schema: dict[str, Any]
    description: str | None = None
    type: Literal["custom"] | None = None
    strict: bool | None = None
    cache_control: CacheControl | None = None

    @model_validator(mode="before")
    @classmethod
    def _custom_only(cls, data: Any) -> Any:
        kind = data.get("type") if isinstance(data, dict) else None
        if isinstance(kind, str) and kind != "custom":
            raise refuse(f"server tools ({kind!r}) are not served; describe a function with name, description and "
                         "input_schema instead", at="type")  # fmt: skip
        return data


class _Choice(_Strict):
    disable_parallel_tool_use: bool | None = None


class ChoiceAuto(_Choice):
    type: Literal["auto"]


class ChoiceAny(_Choice):
    type: Literal["any"]


class ChoiceTool(_Choice):
    type: Literal["tool"]
    name: str


class ChoiceNone(_Strict):
    type: Literal["none"]


ToolChoice = Annotated[ChoiceAuto | ChoiceAny | ChoiceTool | ChoiceNone, Field(discriminator="type")]


class ThinkingDisabled(_Strict):
    type: Literal["disabled"]

    @model_validator(mode="before")
    @classmethod
    def _disabled_only(cls, data: Any) -> Any:
        kind = data.get("type") if isinstance(data, dict) else None
        if kind != "disabled":
            raise refuse(f"extended thinking ({kind!r}) is not served: leave thinking out or send "
                         '{"type": "disabled"}')  # fmt: skip
        return data


class _Conversation(_Strict):
    route: ClassVar[str]

    model: str
    messages: Annotated[list[MessageParam], Field(min_length=1)]
    system: Annotated[list[TextBlock], BeforeValidator(_as_blocks)] | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingDisabled | None = None
    cache_control: CacheControl | None = None


class MessagesRequest(_Conversation):
    """``POST /v1/messages``."""

    route: ClassVar[str] = "/v1/messages"

    max_tokens: Annotated[int, Field(ge=1)]
    temperature: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    stop_sequences: list[Annotated[str, Field(min_length=1)]] | None = None
    stream: bool | None = None
    metadata: Metadata | None = None


class CountTokensRequest(_Conversation):
    """``POST /v1/messages/count_tokens``: the conversation alone."""

    route: ClassVar[str] = "/v1/messages/count_tokens"
