# AgentScope 1.x (checked with 1.0.21) for modelserve deployment 'smol':
# OpenAI Responses at http://127.0.0.1:8000/v1
# Hand it to an agent: ReActAgent(name=..., sys_prompt=..., model=model, formatter=formatter)
from agentscope.formatter import OpenAIResponseChatFormatter
from agentscope.model import OpenAIResponseModel

model = OpenAIResponseModel(
    # sent as "model": the served name
    model_name="smollm2-135m",
    api_key="EMPTY",
    stream=False,
    client_kwargs={"base_url": "http://127.0.0.1:8000/v1", "timeout": 300},
    generate_kwargs={"temperature": 0.7, "max_output_tokens": 512},
)
formatter = OpenAIResponseChatFormatter()
