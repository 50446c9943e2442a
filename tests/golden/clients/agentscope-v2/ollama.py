# AgentScope 2.x (checked with 2.0.11) for modelserve deployment 'smol':
# native Ollama API at http://127.0.0.1:11434
# Models are async: `await model([Msg(name="user", role="user", content=[TextBlock(text=...)])])`,
# or hand it to an agent: agentscope.agent.Agent(name=..., system_prompt=..., model=model)
# Needs the ollama package: pip install 'agentscope[ollama]'
from agentscope.credential import OllamaCredential
from agentscope.model import OllamaChatModel

model = OllamaChatModel(
    credential=OllamaCredential(host="http://127.0.0.1:11434"),
    model="qwen2.5:0.5b",
    parameters=OllamaChatModel.Parameters(max_tokens=512, temperature=0.7),
    stream=False,
    client_kwargs={"timeout": 300},
)
