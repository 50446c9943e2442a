"""Tools and structured output as the scheduler sees them: validated, plain values."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

# A function's parameters when the client gave none: it takes no arguments.
NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class Function:
    name: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=lambda: dict(NO_PARAMETERS))
    strict: bool = False

    def for_template(self) -> dict[str, Any]:
        """OpenAI's tool shape, which HF chat templates take as ``tools=``."""
        function: dict[str, Any] = {"name": self.name, "parameters": self.parameters}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class ToolRequest:
    """The tools a request offers and what it asks of the model. ``choice``: "auto", "required",
    or the name of the one function that must be called. (``tool_choice: "none"`` never makes one.)"""

    functions: tuple[Function, ...]
    choice: str = "auto"
    parallel: bool | None = None  # parallel_tool_calls as sent (None: not said)

    @property
    def forced(self) -> bool:
        """The reply must be a call (required, or a named function)."""
        return self.choice != "auto"

    def callable(self) -> tuple[Function, ...]:
        """The functions the reply may call."""
        if self.choice in ("auto", "required"):
            return self.functions
        return tuple(f for f in self.functions if f.name == self.choice)

    def by_name(self, name: str) -> Function | None:
        return next((f for f in self.functions if f.name == name), None)


@dataclass(frozen=True)
class ResponseFormat:
    """``response_format`` json_object (any JSON object) or json_schema (``schema``)."""

    kind: Literal["json_object", "json_schema"]
    schema: dict[str, Any] | None = None
    strict: bool = False
    name: str = ""


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # a JSON object, as text (OpenAI's shape)
    id: str = field(default_factory=lambda: new_call_id())

    def as_openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}

    def arguments_object(self) -> dict[str, Any]:
        value = json.loads(self.arguments)
        return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class ParsedOutput:
    """What a reply says: text for the user, calls for the client to run, or both."""

    content: str | None
    calls: tuple[ToolCall, ...] = ()


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def arguments_text(value: Any) -> str | None:
    """A call's arguments as OpenAI's JSON text, or None when they are not a JSON object.

    Families write them as an object, or as a string holding one; both come out the same.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if value is None:
        value = {}
    if not isinstance(value, dict):
        return None
    return json.dumps(value, ensure_ascii=False)
