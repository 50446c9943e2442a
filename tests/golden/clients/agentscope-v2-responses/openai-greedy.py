# AgentScope 2.x (checked with 2.0.11) for modelserve deployment 'smol':
# OpenAI Responses at http://127.0.0.1:8000/v1
# Hand it to an agent: agentscope.agent.Agent(name=..., system_prompt=..., model=model)
from agentscope.credential import OpenAICredential
from agentscope.model import OpenAIResponseModel

model = OpenAIResponseModel(
    credential=OpenAICredential(api_key="EMPTY", base_url="http://127.0.0.1:8000/v1"),
    # sent as "model": the served name
    model="smollm2-135m",
    parameters=OpenAIResponseModel.Parameters(max_tokens=48, temperature=0.0),
    stream=False,
    client_kwargs={"timeout": 60.0},
)
