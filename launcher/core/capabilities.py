"""What a backend can serve: the API surfaces and the request features agents rely on.

Backends declare these (``Backend.capabilities``); `modelserve backends` lists them, and later
checks use them to refuse a deployment that cannot serve what its agents will send.

The agent API surfaces beyond Chat Completions (Anthropic Messages with its count_tokens, OpenAI
Responses) are each served one of three ways: ``native`` (the engine has the route, and it is
right), ``translated`` (modelserve's front translates it to the engine's Chat Completions: see
``launcher.front``) or ``no``. A backend that declares nothing gets ``translated`` wherever it
serves the OpenAI API, as a plugin backend does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from launcher.core.names import Api, Task

__all__ = ["SURFACES", "Api", "Capabilities", "Support", "Surface", "Task"]

Support = Literal["native", "translated", "no"]
Surface = Literal["messages", "count_tokens", "responses"]
SURFACES: tuple[Surface, ...] = get_args(Surface)


@dataclass(frozen=True)
class Capabilities:
    apis: tuple[Api, ...]  # the first one is the deployment's main API
    streaming: bool = False  # server-sent chunks on the OpenAI route
    tools: bool = False  # OpenAI `tools` / `tool_choice` answered with tool_calls
    structured_output: bool = False  # `response_format` json_object / json_schema honoured
    # How each agent API surface is served; None: translated where the engine speaks OpenAI.
    messages: Support | None = None  # POST /v1/messages
    count_tokens: Support | None = None  # POST /v1/messages/count_tokens
    responses: Support | None = None  # POST /v1/responses
    # The tasks it serves (`task:`); `-b auto` picks among the backends that serve the deployment's.
    tasks: tuple[Task, ...] = ("generate",)
    # Why it does not serve a task others do, for the refusal's message: ((task, why), ...).
    refusals: tuple[tuple[Task, str], ...] = ()

    @property
    def main_api(self) -> Api:
        return self.apis[0]

    def surface(self, name: Surface) -> Support:
        declared: Support | None = getattr(self, name)
        if declared is not None:
            return declared
        return "translated" if "openai" in self.apis else "no"

    def surfaces(self) -> dict[Surface, Support]:
        return {name: self.surface(name) for name in SURFACES}

    def names(self) -> list[str]:
        """Feature names for listings (`modelserve backends`)."""
        flags = {"streaming": self.streaming, "tools": self.tools, "structured-output": self.structured_output}
        return [*self.apis, *(name for name, on in flags.items() if on), *(t for t in self.tasks if t != "generate")]

    def why_not(self, task: Task) -> str:
        """Why ``task`` is not served ("" when it is, or when no reason was declared)."""
        return "" if task in self.tasks else dict(self.refusals).get(task, "")
