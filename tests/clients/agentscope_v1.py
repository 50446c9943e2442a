"""Runs inside the AgentScope 1.x venv: exec the snippet `modelserve config NAME --format
agentscope-v1` printed, ask one question through the `model` and `formatter` it defines, print
one JSON line.

    python agentscope_v1.py SNIPPET_PATH QUESTION
"""

import asyncio
import json
import sys
from pathlib import Path

from agentscope.message import Msg

path, question = sys.argv[1:]
namespace: dict = {}
exec(compile(Path(path).read_text(), path, "exec"), namespace)  # the rendered text, as a user pastes it
model, formatter = namespace["model"], namespace["formatter"]


async def ask() -> str:
    prompt = await formatter.format([Msg("user", question, "user")])
    reply = await model(prompt)
    return "".join(block.get("text", "") for block in reply.content if block.get("type") == "text")


text = asyncio.run(ask())
print(json.dumps({"class": type(model).__name__, "model": model.model_name, "text": text}), flush=True)
