# AgentScope 2.x (checked with 2.0.11's source) for modelserve deployment 'minilm':
# native Ollama embeddings API at http://127.0.0.1:11434
# Embedding models are async: `await embedding(["text", ...])` -> .embeddings
# Needs the ollama package: pip install 'agentscope[ollama]'
from agentscope.credential import OllamaCredential
from agentscope.embedding import OllamaEmbeddingModel

embedding = OllamaEmbeddingModel(
    credential=OllamaCredential(host="http://127.0.0.1:11434"),
    model="all-minilm:latest",
    # the model's size: `ollama show MODEL` (its embedding_length); None sends none
    dimensions=None,
)
