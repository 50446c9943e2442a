"""Runs inside the AgentScope 2.x venv: exec the snippet `modelserve config NAME --format
agentscope-v2` printed, ask one question through the `model` it defines, print one JSON line.

    python agentscope_v2.py SNIPPET_PATH QUESTION
"""

import asyncio
import json
import sys
from pathlib import Path

from agentscope.message import Msg, TextBlock

path, question = sys.argv[1:]
namespace: dict = {}
exec(compile(Path(path).read_text(), path, "exec"), namespace)  # the rendered text, as a user pastes it
model = namespace["model"]


async def ask() -> str:
    # 2.x: Msg.content must be a list of blocks (a plain string is a ValidationError).
    reply = await model([Msg(name="user", role="user", content=[TextBlock(text=question)])])
    return "".join(block.text for block in reply.content if isinstance(block, TextBlock))


text = asyncio.run(ask())
print(json.dumps({"class": type(model).__name__, "model": model.model, "text": text}), flush=True)
