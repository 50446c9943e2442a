# AgentScope 1.x (checked with 1.0.21) for modelserve deployment 'minilm':
# OpenAI-compatible embeddings API at http://127.0.0.1:8000/v1
# Embedding models are async: `await embedding(["text", ...])` -> .embeddings
# For a knowledge base: agentscope.rag.SimpleKnowledge(embedding_model=embedding,
#   embedding_store=QdrantStore(location=":memory:", collection_name=..., dimensions=<the same>))
from agentscope.embedding import OpenAITextEmbedding

embedding = OpenAITextEmbedding(
    # sent as "model": the served name
    model_name="minilm",
    api_key="EMPTY",
    # the model's own size: AgentScope sends it with every request
    dimensions=384,
    # the rest is passed to openai.AsyncClient
    base_url="http://127.0.0.1:8000/v1",
    timeout=300,
)
