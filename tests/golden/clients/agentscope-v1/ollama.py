# AgentScope 1.x (checked with 1.0.21) for modelserve deployment 'smol':
# native Ollama API at http://127.0.0.1:11434
# Models are async: `await model(await formatter.format(msgs))`, or hand both to an agent:
#   ReActAgent(name="assistant", sys_prompt="...", model=model, formatter=formatter)
# Needs the ollama package: pip install ollama
from agentscope.formatter import OllamaChatFormatter
from agentscope.model import OllamaChatModel

model = OllamaChatModel(
    model_name="qwen2.5:0.5b",
    stream=False,
    options={"temperature": 0.7, "num_predict": 512},
    keep_alive="5m",
    host="http://127.0.0.1:11434",
    client_kwargs={"timeout": 300},
)
formatter = OllamaChatFormatter()
