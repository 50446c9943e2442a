# AgentScope 2.x (checked with 2.0.11's source) for modelserve deployment 'minilm':
# OpenAI-compatible embeddings API at http://127.0.0.1:8000/v1
# Embedding models are async: `await embedding(["text", ...])` -> .embeddings
from agentscope.credential import OpenAICredential
from agentscope.embedding import OpenAIEmbeddingModel

embedding = OpenAIEmbeddingModel(
    credential=OpenAICredential(api_key="s3cret", base_url="http://127.0.0.1:8000/v1"),
    # sent as "model": the served name
    model="minilm",
    # the model's own size: AgentScope sends it with every request
    dimensions=384,
)
