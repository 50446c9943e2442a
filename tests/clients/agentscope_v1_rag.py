"""Runs inside the AgentScope 1.x venv with qdrant-client: exec the embedding snippet
`modelserve config NAME --format agentscope-v1` printed, embed with it, then give an agent a
knowledge base built with that embedding model and ask it a question only a document answers.
Prints JSON lines: the snippet's vectors, what the knowledge base retrieved, the agent's answer.

    python agentscope_v1_rag.py EMBED_SNIPPET CHAT_SNIPPET QUESTION DOCUMENT [DOCUMENT...]
"""

import asyncio
import json
import sys
from pathlib import Path

from agentscope.agent import ReActAgent
from agentscope.message import Msg, TextBlock
from agentscope.rag import DocMetadata, Document, QdrantStore, SimpleKnowledge


def run_snippet(path: str) -> dict:
    namespace: dict = {}
    exec(compile(Path(path).read_text(), path, "exec"), namespace)  # the rendered text, as a user pastes it
    return namespace


embed_path, chat_path, question, *documents = sys.argv[1:]
embedding = run_snippet(embed_path)["embedding"]
chat = run_snippet(chat_path)


async def main() -> None:
    vectors = await embedding(documents[:2])
    print(json.dumps({"kind": "snippet", "class": type(embedding).__name__, "dimensions": embedding.dimensions,
                      "sizes": [len(v) for v in vectors.embeddings]}), flush=True)
    store = QdrantStore(location=":memory:", collection_name="docs", dimensions=embedding.dimensions)
    knowledge = SimpleKnowledge(embedding_model=embedding, embedding_store=store)
    await knowledge.add_documents([
        Document(metadata=DocMetadata(content=TextBlock(type="text", text=text), doc_id=f"doc{i}", chunk_id=0,
                                      total_chunks=1)) for i, text in enumerate(documents)])
    found = await knowledge.retrieve(question, limit=1)
    print(json.dumps({"kind": "retrieved", "texts": [d.metadata.content["text"] for d in found]}), flush=True)
    agent = ReActAgent(name="assistant", sys_prompt="Answer from the knowledge you are given, in one short sentence.",
                       model=chat["model"], formatter=chat["formatter"], knowledge=knowledge)
    reply = await agent(Msg("user", question, "user"))
    print(json.dumps({"kind": "answer", "text": reply.get_text_content()}), flush=True)


asyncio.run(main())
