"""Runs inside the AgentScope 0.1.6 venv: load a model_config.json the way a user does and embed
texts through each named embedding entry, printing one JSON line per entry.

    python agentscope_016_embedding.py CONFIG_PATH NAME[,NAME...] TEXT [TEXT...]

0.1.6 defines PostAPIEmbeddingWrapper (agentscope.models.post_model) but neither exports nor registers it, so a
post_api_embedding entry needs it registered first (README: Embeddings and rerank): done here,
as a user would. An ollama_embedding entry embeds one text per call.
"""

import json
import sys

import agentscope
from agentscope.manager import ModelManager
from agentscope.models.post_model import PostAPIEmbeddingWrapper

path, names, *texts = sys.argv[1:]
agentscope.init(model_configs=path, disable_saving=True)
agentscope.register_model_wrapper_class(PostAPIEmbeddingWrapper, exist_ok=True)
manager = ModelManager.get_instance()
for name in names.split(","):
    model = manager.get_model_by_config_name(name)
    if model.model_type == "ollama_embedding":  # one prompt per call (Ollama's /api/embeddings)
        vectors = [model(text).embedding[0] for text in texts]
    else:
        vectors = model(texts).embedding
    print(json.dumps({"config_name": name, "model_type": model.model_type, "vectors": vectors}), flush=True)
