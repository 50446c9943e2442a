"""What a backend can serve: the API surfaces and the request features agents rely on.

Backends declare these (``Backend.capabilities``); `modelserve backends` lists them, and later
checks use them to refuse a deployment that cannot serve what its agents will send.
"""

from __future__ import annotations

from dataclasses import dataclass

from launcher.core.names import Api

__all__ = ["Api", "Capabilities"]


@dataclass(frozen=True)
class Capabilities:
    apis: tuple[Api, ...]  # the first one is the deployment's main API
    streaming: bool = False  # server-sent chunks on the OpenAI route
    tools: bool = False  # OpenAI `tools` / `tool_choice` answered with tool_calls
    structured_output: bool = False  # `response_format` json_object / json_schema honoured

    @property
    def main_api(self) -> Api:
        return self.apis[0]

    def names(self) -> list[str]:
        """Feature names for listings (`modelserve backends`)."""
        flags = {"streaming": self.streaming, "tools": self.tools, "structured-output": self.structured_output}
        return [*self.apis, *(name for name, on in flags.items() if on)]
