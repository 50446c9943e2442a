"""The request bodies as pydantic models: shapes and types only.

Strict like the hand-written checks they replace: a boolean is not a number, a number is not a
string, NaN and infinity are not numbers. Unknown top-level keys are refused (a silently dropped
typo hides bugs); inside a message or ``stream_options`` unknown keys are ignored, as before,
because clients send ``tool_call_id`` and the like there. Rules between fields (greedy at
temperature 0, ``n`` must be 1, the --max-new-tokens-limit, ...) live in protocol.py.

Every field declared here is honoured (protocol.py turns it into the GenerationRequest; ``user``
and ``metadata`` annotate the request's log line) or refused there with a 400 that names it.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)
from pydantic_core import PydanticCustomError


def expect(expected: str, *, inside: bool = False) -> WrapValidator:
    """Word a failure of this value as ``must be <expected>`` (the translator adds path and value).

    Errors deeper inside the value keep their own path and wording unless ``inside`` is set, so
    ``messages[2].role`` is still reported as such, not as "messages must be ...".
    """

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            if inside or any(not e["loc"] for e in exc.errors()):
                raise PydanticCustomError("expected", "must be {expected}", {"expected": expected}) from None
            raise

    return WrapValidator(validate)


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, allow_inf_nan=False, frozen=True, extra="ignore")


class RequestBody(_Strict):
    """A whole request body: unknown keys are a 400 worded by :meth:`unknown_key_message`."""

    model_config = ConfigDict(extra="forbid")
    route: ClassVar[str]

    @classmethod
    def unknown_key_message(cls, key: str) -> str:
        return f"unsupported field {key!r} for {cls.route}; known fields: {', '.join(sorted(cls.model_fields))}"


# ----------------------------------------------------------------------------- messages

# Chat templates know system/user/assistant (some also tool); "developer" is OpenAI's newer name
# for "system" and is mapped to it so templates that raise on unknown roles keep working.
Role = Literal["system", "user", "assistant", "tool", "function", "developer"]
CHAT_ROLES: frozenset[str] = frozenset(get_args(Role))


class TextPart(_Strict):
    type: Literal["text"]
    text: str


def _text_as_parts(value: Any) -> Any:
    # One shape after validation: a plain string is a single text part.
    return [{"type": "text", "text": value}] if isinstance(value, str) else value


Content = Annotated[
    list[Annotated[TextPart, expect('{"type": "text", "text": "..."} (this server is text-only)', inside=True)]],
    BeforeValidator(_text_as_parts),
    expect("a string or an array of text parts"),
]


class ToolCallFunction(_Strict):
    name: str
    # OpenAI sends the arguments as JSON text; an object is taken too.
    arguments: str | dict[str, Any] = "{}"


class ToolCallParam(_Strict):
    """An earlier call, in an assistant turn."""

    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class ChatMessageParam(_Strict):
    """One message as clients send it, OpenAI or AgentScope shape (AgentScope 1.x/2.x send parts)."""

    role: Annotated[Role, expect(f"one of {', '.join(sorted(CHAT_ROLES))}")]
    # None is allowed for an assistant turn that only carried tool calls (OpenAI's shape).
    content: Content | None = None
    name: str | None = None
    tool_calls: list[ToolCallParam] | None = None
    tool_call_id: str | None = None  # a tool turn: the call it answers


Messages = Annotated[
    list[Annotated[ChatMessageParam, expect("an object with role and content")]],
    Field(min_length=1),
    expect('a non-empty array of {"role", "content"} objects'),
]


# ----------------------------------------------------------------------------- /llm/


class LlmRequest(RequestBody):
    """AgentScope ``post_api_chat``: the chat as ``messages`` (or ``inputs``), plus generate() kwargs.

    AgentScope's original script passed every other key straight to generate(); those it can
    honour are declared below in that role. num_beams is deliberately absent: beam search cannot
    share a batched sampling generate() call.
    """

    route: ClassVar[str] = "/llm/"

    messages: Messages | None = None
    inputs: Messages | None = None  # AgentScope <= 0.0.5
    max_new_tokens: int | None = Field(default=None, ge=1)
    max_length: int | None = Field(default=None, ge=1)
    min_new_tokens: int | None = Field(default=None, ge=0)
    do_sample: bool | None = None
    temperature: float | None = Field(default=None, ge=0.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    repetition_penalty: float | None = Field(default=None, gt=0.0)

    @model_validator(mode="before")
    @classmethod
    def _one_chat_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and "messages" in data and "inputs" in data:
            raise PydanticCustomError("conflict", "send the chat as either messages or inputs, not both")
        return data

    @classmethod
    def unknown_key_message(cls, key: str) -> str:
        # AgentScope users tend to put "model" in json_args; generate() would raise on it there.
        return (
            f"unsupported key {key!r} in the /llm/ body: every key besides messages (or inputs) goes to "
            f"generate(); allowed: {', '.join(LLM_GENERATE_KEYS)}. Drop it from json_args "
            "(the model name belongs in the AgentScope config's model_name, not json_args)"
        )


LLM_GENERATE_KEYS: tuple[str, ...] = tuple(k for k in LlmRequest.model_fields if k not in ("messages", "inputs"))


# ----------------------------------------------------------------------------- OpenAI


class StreamOptions(_Strict):
    include_usage: bool | None = None


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


Stop = Annotated[
    list[Annotated[str, Field(min_length=1), expect("a non-empty string")]],
    BeforeValidator(_one_or_many),
    expect("a string or an array of strings"),
]


class _OpenAIRequest(RequestBody):
    # Compared with the served name before validation (a wrong model is a 404 first, as in vLLM).
    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    n: int | None = Field(default=None, ge=1)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    stop: Stop | None = None
    # vLLM's extra sampling parameters, which we honour.
    top_k: int | None = Field(default=None, ge=-1)
    repetition_penalty: float | None = Field(default=None, gt=0.0)
    min_tokens: int | None = Field(default=None, ge=0)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)  # torch's generator takes a 64-bit seed
    user: str | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, Any] | None = None
    metadata: Any = None
    store: Any = None
    service_tier: Any = None


# ----------------------------------------------------------------------------- tools, response_format

FunctionName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$"),
                         expect("a function name (letters, digits, _ . -; at most 64)")]  # fmt: skip


class FunctionDef(_Strict):
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON schema for the arguments object
    strict: bool | None = None


class ToolParam(_Strict):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Strict):
    name: str


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Annotated[
    Literal["auto", "none", "required"] | NamedToolChoice,
    expect('"auto", "none", "required" or {"type": "function", "function": {"name": ...}}'),
]


class JsonSchemaFormat(_Strict):
    model_config = ConfigDict(populate_by_name=True)

    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormatParam(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class ChatCompletionRequest(_OpenAIRequest):
    route: ClassVar[str] = "/v1/chat/completions"

    messages: Messages | None = None
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: ResponseFormatParam | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # OpenAI's older spelling of tools / tool_choice, read as those.
    functions: list[FunctionDef] | None = None
    function_call: Annotated[Literal["auto", "none"] | NamedFunction, expect('"auto", "none" or {"name": ...}')] | None = None
    reasoning_effort: Any = None
    modalities: Any = None

    @model_validator(mode="before")
    @classmethod
    def _max_completion_tokens_wins(cls, data: Any) -> Any:
        # Clients that send both (AgentScope 2.x) mean max_completion_tokens; max_tokens was never
        # looked at then, so a stale value there must not turn the request into a 400.
        if isinstance(data, dict) and data.get("max_completion_tokens") is not None and "max_tokens" in data:
            return {k: v for k, v in data.items() if k != "max_tokens"}
        return data


def _single_prompt(value: Any) -> Any:
    # OpenAI SDKs may send a one-element batch; it means the same as the string.
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    return value


Prompt = Annotated[
    str,
    Field(min_length=1),
    BeforeValidator(_single_prompt),
    expect("one non-empty string (token arrays and batches are not supported)"),
]


class CompletionRequest(_OpenAIRequest):
    route: ClassVar[str] = "/v1/completions"

    prompt: Prompt | None = None
    logprobs: int | None = Field(default=None, ge=0, le=5)  # the legacy API: how many alternatives
    # echo, suffix and best_of > 1 are refused in protocol.py.
    echo: Any = None
    suffix: Any = None
    best_of: int | None = Field(default=None, ge=1)


CHAT_KEYS: frozenset[str] = frozenset(ChatCompletionRequest.model_fields)
COMPLETION_KEYS: frozenset[str] = frozenset(CompletionRequest.model_fields)
