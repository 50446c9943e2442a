"""Runs inside the ModelScope-Agent venv: build the chat model from what `modelserve config`
printed and ask one question through it, greedy; print one JSON line.

    python modelscope_agent_072.py llm-config LLM_CONFIG_JSON_PATH QUESTION
    python modelscope_agent_072.py agentfabric MODEL_CONFIG_JSON_PATH QUESTION NAME

llm-config: the dict as printed, passed as Agent(llm=...) does: get_chat_model(**llm_config).
agentfabric: the app is not part of the package; this does what its user_core.py does with an
entry of config/model_config.json: llm_config = deepcopy(model_cfg[NAME]);
llm_config["model_server"] = llm_config.pop("type"); then get_chat_model(**llm_config).
"""

import copy
import json
import sys
from pathlib import Path

from modelscope_agent.llm import get_chat_model

mode, path, question, *rest = sys.argv[1:]
data = json.loads(Path(path).read_text())
if mode == "llm-config":
    llm_config = data
else:
    llm_config = copy.deepcopy(data[rest[0]])
    llm_config["model_server"] = llm_config.pop("type")
llm = get_chat_model(**llm_config)
text = llm.chat(messages=[{"role": "user", "content": question}], stream=False, temperature=0, max_tokens=48)
print(json.dumps({"class": type(llm).__name__, "model": llm.model, "text": text}), flush=True)
