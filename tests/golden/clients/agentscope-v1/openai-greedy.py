# AgentScope 1.x (checked with 1.0.21) for modelserve deployment 'smol':
# OpenAI-compatible API at http://127.0.0.1:8000/v1
# Models are async: `await model(await formatter.format(msgs))`, or hand both to an agent:
#   ReActAgent(name="assistant", sys_prompt="...", model=model, formatter=formatter)
from agentscope.formatter import OpenAIChatFormatter
from agentscope.model import OpenAIChatModel

model = OpenAIChatModel(
    # sent as "model": the served name
    model_name="smollm2-135m",
    api_key="EMPTY",
    stream=False,
    # AgentScope 1.0.0 spells it client_args
    client_kwargs={"base_url": "http://127.0.0.1:8000/v1", "timeout": 60.0},
    generate_kwargs={"max_tokens": 48, "temperature": 0.0},
)
formatter = OpenAIChatFormatter()
