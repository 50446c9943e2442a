"""Runs inside the AgentScope 1.x venv: AgentScope's own agent machinery against a modelserve
deployment, printing one JSON line per check.

    python agentscope_v1_tools.py BASE_URL MODEL [API_KEY]

- ``call``: OpenAIChatModel (stream off, then on) with a toolkit and tool_choice="required"
  returns a tool_use block, and the Toolkit executes it;
- ``structured``: ReActAgent(...)(msg, structured_model=M) ends with metadata that validates as M;
- ``react``: a ReActAgent with a toolkit (tool_choice auto) completes a run; whether it chose
  the tool is recorded (a tiny model may not).
"""

import asyncio
import json
import sys
from collections.abc import AsyncGenerator

from agentscope.agent import ReActAgent
from agentscope.formatter import OpenAIChatFormatter
from agentscope.message import Msg, TextBlock
from agentscope.model import OpenAIChatModel
from agentscope.tool import Toolkit, ToolResponse
from pydantic import BaseModel, Field

base_url, model_name = sys.argv[1], sys.argv[2]
api_key = sys.argv[3] if len(sys.argv) > 3 else "EMPTY"
CALLED: list[str] = []


def get_weather(city: str) -> ToolResponse:
    """Get the current weather in a city.

    Args:
        city (str): The name of the city, e.g. Paris.
    """
    CALLED.append(city)
    return ToolResponse(content=[TextBlock(type="text", text=f"It is sunny and 21 C in {city}.")])


class CityAnswer(BaseModel):
    city: str = Field(description="the city")
    country: str = Field(description="the country it is in")


def model(stream: bool) -> OpenAIChatModel:
    return OpenAIChatModel(model_name, api_key=api_key, stream=stream, client_kwargs={"base_url": base_url},
                           generate_kwargs={"max_tokens": 96, "temperature": 0})


def toolkit() -> Toolkit:
    kit = Toolkit()
    kit.register_tool_function(get_weather)
    return kit


async def last(reply):  # a streamed reply is an async generator of growing ChatResponses
    if isinstance(reply, AsyncGenerator):
        final = None
        async for chunk in reply:
            final = chunk
        return final
    return reply


async def call(stream: bool) -> dict:
    kit = toolkit()
    prompt = await OpenAIChatFormatter().format([Msg("user", "What is the weather in Paris?", "user")])
    reply = await last(await model(stream)(prompt, tools=kit.get_json_schemas(), tool_choice="required"))
    uses = [b for b in reply.content if b.get("type") == "tool_use"]
    result = None
    if uses:
        async for chunk in await kit.call_tool_function(uses[0]):
            result = "".join(b.get("text", "") for b in chunk.content if b.get("type") == "text")
    return {"check": "call", "stream": stream, "tool_use": [{"name": u["name"], "input": u["input"]} for u in uses],
            "result": result}


async def structured() -> dict:
    agent = ReActAgent(name="assistant", sys_prompt="You are a helpful assistant.", model=model(False),
                       formatter=OpenAIChatFormatter(), toolkit=Toolkit(), max_iters=4)
    reply = await agent(Msg("user", "Which city is the capital of France, and in which country is it?", "user"),
                        structured_model=CityAnswer)
    meta = reply.metadata or {}
    return {"check": "structured", "metadata": meta, "valid": CityAnswer.model_validate(meta).model_dump()}


async def react() -> dict:
    agent = ReActAgent(name="assistant", sys_prompt="You are a helpful assistant. Use tools when they help.",
                       model=model(True), formatter=OpenAIChatFormatter(), toolkit=toolkit(), max_iters=3)
    reply = await agent(Msg("user", "What is the weather in Paris?", "user"))
    return {"check": "react", "text": reply.get_text_content(), "called_tool": bool(CALLED)}


async def main() -> None:
    for check in (call(False), call(True), structured(), react()):
        print(json.dumps(await check), flush=True)


asyncio.run(main())
