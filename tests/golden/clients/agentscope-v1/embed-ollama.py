# AgentScope 1.x (checked with 1.0.21) for modelserve deployment 'minilm':
# native Ollama embeddings API at http://127.0.0.1:11434
# Embedding models are async: `await embedding(["text", ...])` -> .embeddings
# For a knowledge base: agentscope.rag.SimpleKnowledge(embedding_model=embedding,
#   embedding_store=QdrantStore(location=":memory:", collection_name=..., dimensions=<the same>))
# Needs the ollama package: pip install ollama
from agentscope.embedding import OllamaTextEmbedding

embedding = OllamaTextEmbedding(
    model_name="all-minilm:latest",
    # the model's size: `ollama show MODEL` (its embedding_length); None sends none
    dimensions=None,
    host="http://127.0.0.1:11434",
    timeout=300,
)
