"""Runs inside a client's venv: uses one config `modelserve config NAME -f FORMAT` rendered, the
way its README section says, and prints the reply as a JSON line.

    python rendered_config.py anthropic-env          # the environment holds the rendered lines
    python rendered_config.py openai-agents FILE     # FILE: the rendered snippet
    python rendered_config.py agentscope FILE        # an agentscope-v1-anthropic|responses snippet
"""

import asyncio
import json
import os
import sys
from pathlib import Path

kind = sys.argv[1]
if kind == "anthropic-env":
    import anthropic

    client = anthropic.Anthropic()  # ANTHROPIC_BASE_URL, ANTHROPIC_AUTH_TOKEN: what Claude Code reads too
    msg = client.messages.create(model=os.environ["ANTHROPIC_MODEL"], max_tokens=8,
                                 messages=[{"role": "user", "content": "Say hello."}])  # fmt: skip
    print(json.dumps({"text": msg.content[0].text}))
elif kind == "openai-agents":
    scope: dict = {}
    exec(Path(sys.argv[2]).read_text(), scope)  # the snippet defines `agent`
    from agents import Runner

    print(json.dumps({"text": Runner.run_sync(scope["agent"], "Say hello.").final_output}))
elif kind == "agentscope":
    from agentscope.message import Msg

    scope = {}
    exec(Path(sys.argv[2]).read_text(), scope)  # the snippet defines `model` and `formatter`

    async def ask() -> str:
        prompt = await scope["formatter"].format([Msg("user", "Say hello.", "user")])
        reply = await scope["model"](prompt)
        return "".join(b.get("text", "") for b in reply.content if b.get("type") == "text")

    print(json.dumps({"text": asyncio.run(ask())}))
