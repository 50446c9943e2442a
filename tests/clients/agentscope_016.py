"""Runs inside the AgentScope 0.1.6 venv: load a model_config.json the way a user does, ask one
question through each named entry, print one JSON line per entry.

    python agentscope_016.py CONFIG_PATH QUESTION NAME [NAME...]
"""

import json
import sys

import agentscope
from agentscope.manager import ModelManager
from agentscope.message import Msg

path, question, *names = sys.argv[1:]
agentscope.init(model_configs=path, disable_saving=True)
manager = ModelManager.get_instance()
for name in names:
    model = manager.get_model_by_config_name(name)
    prompt = model.format(Msg("user", question, role="user"))
    reply = model(prompt)
    print(json.dumps({"config_name": name, "model_type": model.model_type, "text": reply.text}), flush=True)
