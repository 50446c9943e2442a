# AgentScope 1.x (checked with 1.0.21) for modelserve deployment 'smol':
# Anthropic Messages at http://127.0.0.1:8000
# Hand it to an agent: ReActAgent(name=..., sys_prompt=..., model=model, formatter=formatter)
from agentscope.formatter import AnthropicChatFormatter
from agentscope.model import AnthropicChatModel

model = AnthropicChatModel(
    # sent as "model": the served name
    model_name="smollm2-135m",
    api_key="s3cret",
    stream=False,
    max_tokens=512,
    client_kwargs={"base_url": "http://127.0.0.1:8000", "timeout": 300},
    # the anthropic SDK 2.17 has no temperature parameter: extra_body carries it
    generate_kwargs={"extra_body": {"temperature": 0.7}},
)
formatter = AnthropicChatFormatter()
