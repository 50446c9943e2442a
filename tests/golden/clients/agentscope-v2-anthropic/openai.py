# AgentScope 2.x (checked with 2.0.11) for modelserve deployment 'smol':
# Anthropic Messages at http://127.0.0.1:8000
# Hand it to an agent: agentscope.agent.Agent(name=..., system_prompt=..., model=model)
from agentscope.credential import AnthropicCredential
from agentscope.model import AnthropicChatModel

model = AnthropicChatModel(
    credential=AnthropicCredential(api_key="EMPTY", base_url="http://127.0.0.1:8000"),
    # sent as "model": the served name
    model="smollm2-135m",
    parameters=AnthropicChatModel.Parameters(max_tokens=512),
    stream=False,
    client_kwargs={"timeout": 300},
)
