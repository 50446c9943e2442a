# OpenAI Agents SDK (checked with openai-agents 0.24.0) for modelserve deployment 'smol':
# OpenAI Responses at http://127.0.0.1:8000/v1
# Run it: from agents import Runner; print(Runner.run_sync(agent, "Hello").final_output)
from agents import Agent, ModelSettings, OpenAIResponsesModel, set_tracing_disabled
from openai import AsyncOpenAI

# Traces would go to OpenAI's servers (and need an OpenAI key): off.
set_tracing_disabled(True)
client = AsyncOpenAI(
    base_url="http://127.0.0.1:8000/v1",
    api_key="EMPTY",
    timeout=60.0,
)
agent = Agent(
    name="assistant",
    instructions="You are a helpful assistant.",
    # sent as "model": the served name
    model=OpenAIResponsesModel(model="smollm2-135m", openai_client=client),
    model_settings=ModelSettings(temperature=0.0, max_tokens=48),
)
