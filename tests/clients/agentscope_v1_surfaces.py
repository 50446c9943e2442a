"""Runs inside the AgentScope 1.x venv: AgentScope's AnthropicChatModel (Anthropic Messages) and
OpenAIResponseModel (OpenAI Responses) against a modelserve deployment, one JSON line per check.

    python agentscope_v1_surfaces.py BASE_URL MODEL [API_KEY]     # BASE_URL without /v1

For each model (streamed, AgentScope's default): ``react``, a ReActAgent with a toolkit holding
get_weather whose first reasoning step must call a tool (AgentScope's own tool_choice "required",
which it uses for structured output: a tiny model left to choose may not call one); the run shows
that the agent called get_weather, what the tool answered it (the results its memory holds), and
the answer it ended with.
"""

import asyncio
import json
import sys

from agentscope.agent import ReActAgent
from agentscope.formatter import AnthropicChatFormatter, OpenAIResponseChatFormatter
from agentscope.message import Msg, TextBlock
from agentscope.model import AnthropicChatModel, OpenAIResponseModel
from agentscope.tool import Toolkit, ToolResponse

base_url, model_name = sys.argv[1].rstrip("/"), sys.argv[2]
api_key = sys.argv[3] if len(sys.argv) > 3 else "EMPTY"
CALLED: list[str] = []


def get_weather(city: str) -> ToolResponse:
    """Get the current weather in a city.

    Args:
        city (str): The name of the city, e.g. Paris.
    """
    CALLED.append(city)
    return ToolResponse(content=[TextBlock(type="text", text=f"It is sunny and 21 C in {city}.")])


class FirstStepCallsATool(ReActAgent):
    """ReActAgent, its first reasoning step held to tool_choice="required"; the rest its own."""

    first = True

    async def _reasoning(self, tool_choice=None):
        if self.first:
            self.first, tool_choice = False, "required"
        return await super()._reasoning(tool_choice)


def toolkit() -> Toolkit:
    kit = Toolkit()
    kit.register_tool_function(get_weather)
    return kit


def models(stream: bool) -> dict:
    return {
        # anthropic 2.17 (what agentscope 1.0.21 installs) has no temperature parameter: extra_body carries it.
        "anthropic": (AnthropicChatModel(model_name, api_key=api_key, stream=stream, max_tokens=96,
                                         client_kwargs={"base_url": base_url},
                                         generate_kwargs={"extra_body": {"temperature": 0}}),
                      AnthropicChatFormatter()),
        "responses": (OpenAIResponseModel(model_name, api_key=api_key, stream=stream,
                                          client_kwargs={"base_url": base_url + "/v1"},
                                          generate_kwargs={"temperature": 0, "max_output_tokens": 96}),
                      OpenAIResponseChatFormatter()),
    }  # fmt: skip


async def react(surface: str) -> dict:
    model, formatter = models(True)[surface]
    CALLED.clear()
    agent = FirstStepCallsATool(name="assistant", sys_prompt="You are a helpful assistant. Call get_weather to learn "
                                "the weather, then report it.", model=model, formatter=formatter, toolkit=toolkit(),
                                max_iters=2)  # fmt: skip
    agent.set_console_output_enabled(False)  # stdout carries the JSON lines
    reply = await agent(Msg("user", "What is the weather in Paris?", "user"))
    results = [block["output"][0]["text"] for msg in await agent.memory.get_memory()
               for block in msg.get_content_blocks("tool_result") if block.get("output")]  # fmt: skip
    return {"check": "react", "surface": surface, "called": list(CALLED), "results": results,
            "text": reply.get_text_content(), "metadata": reply.metadata}  # fmt: skip


async def main() -> None:
    only = sys.argv[4].split(",") if len(sys.argv) > 4 else ["anthropic", "responses"]
    for surface in only:
        for check in (react(surface),):
            try:
                print(json.dumps(await check, default=str), flush=True)
            except Exception as exc:  # reported; the other checks still run
                print(json.dumps({"check": "crashed", "surface": surface, "error": f"{type(exc).__name__}: {exc}"}),
                      flush=True)  # fmt: skip


asyncio.run(main())
