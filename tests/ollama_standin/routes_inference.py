"""Ollama's own inference routes: /api/chat, /api/generate, /api/embed and /api/embeddings.

Built from Ollama docs/api.md: POST /api/chat {model, messages, stream, options, format,
keep_alive, tools} -> {model, created_at, message{role, content}, done, done_reason,
total_duration, load_duration, prompt_eval_count, prompt_eval_duration, eval_count, eval_duration}
(streamed: one object per piece, the last one done with the statistics; empty messages load the
model, done_reason "load", or "unload" with keep_alive 0); POST /api/generate {model, prompt, ...}
-> {response, context, ...}; POST /api/embed {model, input} -> {embeddings}; POST /api/embeddings
{model, prompt} -> {embedding}.
"""

from __future__ import annotations

import time
from typing import Any

from tests.ollama_standin.common import now_rfc3339
from tests.ollama_standin.embeddings import embed_all, size_of, texts_of, vector
from tests.ollama_standin.generation import (
    after_tool,
    as_int,
    last_user,
    pieces,
    reply_for,
    text_of,
    tool_call_for,
)
from tests.ollama_standin.handler_base import BadRequest, BaseHandler


class InferenceRoutes(BaseHandler):
    def refuse_embedding_model(self, name: str, manifest: dict[str, Any], what: str) -> None:
        """An embedding model generates nothing (Ollama: '"all-minilm:latest" does not support chat')."""
        if "embedding_length" in self.store.config(manifest):
            raise BadRequest(400, f'"{name}" does not support {what}')

    def chat(self) -> None:
        start = time.monotonic()
        body = self.json_body()
        name, manifest = self.require_model(body.get("model"))
        self.refuse_embedding_model(name, manifest, "chat")
        messages = body.get("messages") or []
        if not isinstance(messages, list):
            raise BadRequest(400, "messages must be a list")
        stream = body.get("stream", True) is not False
        options: dict[str, Any] = body["options"] if isinstance(body.get("options"), dict) else {}
        keep_alive = body.get("keep_alive")
        self.touch(name, keep_alive)
        if not messages:
            reason = "unload" if keep_alive in (0, "0", "0s", "0m") else "load"
            self.send_json(200, {"model": name, "created_at": now_rfc3339(),
                                 "message": {"role": "assistant", "content": ""}, "done_reason": reason, "done": True})
            return
        prompt_tokens = sum(len(pieces(text_of(m.get("content")))) for m in messages if isinstance(m, dict))
        call = tool_call_for(body.get("tools"), messages)
        if call is not None:  # docs/api.md: message.tool_calls [{function: {name, arguments (an object)}}]
            message = {"role": "assistant", "content": "", "tool_calls": [{"function": call}]}
            final = {"model": name, "created_at": now_rfc3339(), "message": message, "done": True,
                     "done_reason": "stop", **self.stats(start, prompt_tokens, 1)}  # fmt: skip
            if stream:  # a streamed call comes whole in one chunk, then the closing statistics
                self.start_stream("application/x-ndjson")
                self.ndjson({**final, "done": False, "done_reason": None})
                self.ndjson({**final, "message": {"role": "assistant", "content": ""}})
                self.end_stream()
            else:
                self.send_json(200, final)
            return
        tool_result = after_tool(messages)
        prompt = f"the tool said {tool_result}" if tool_result is not None else last_user(messages)
        tokens, reason = reply_for(name, prompt, as_int(options.get("num_predict")))
        if not stream:
            self.send_json(200, {"model": name, "created_at": now_rfc3339(),
                                 "message": {"role": "assistant", "content": "".join(tokens)}, "done": True,
                                 "done_reason": reason, **self.stats(start, prompt_tokens, len(tokens))})
            return
        self.start_stream("application/x-ndjson")
        for token in tokens:
            self.ndjson({"model": name, "created_at": now_rfc3339(), "message": {"role": "assistant", "content": token},
                         "done": False})  # fmt: skip
        self.ndjson({"model": name, "created_at": now_rfc3339(), "message": {"role": "assistant", "content": ""},
                     "done": True, "done_reason": reason, **self.stats(start, prompt_tokens, len(tokens))})
        self.end_stream()

    def generate(self) -> None:
        start = time.monotonic()
        body = self.json_body()
        name, manifest = self.require_model(body.get("model"))
        self.refuse_embedding_model(name, manifest, "generate")
        prompt = text_of(body.get("prompt"))
        stream = body.get("stream", True) is not False
        options: dict[str, Any] = body["options"] if isinstance(body.get("options"), dict) else {}
        self.touch(name, body.get("keep_alive"))
        if not prompt:
            self.send_json(200, {"model": name, "created_at": now_rfc3339(), "response": "", "done": True,
                                 "done_reason": "load"})
            return
        tokens, reason = reply_for(name, prompt, as_int(options.get("num_predict")))
        context = [len(t) for t in pieces(prompt)][:16]

        def final(response: str) -> dict[str, Any]:
            return {"model": name, "created_at": now_rfc3339(), "response": response, "done": True,
                    "done_reason": reason, "context": context, **self.stats(start, len(pieces(prompt)), len(tokens))}

        if not stream:
            self.send_json(200, final("".join(tokens)))
            return
        self.start_stream("application/x-ndjson")
        for token in tokens:
            self.ndjson({"model": name, "created_at": now_rfc3339(), "response": token, "done": False})
        self.ndjson(final(""))
        self.end_stream()

    def embed(self) -> None:
        start = time.monotonic()
        body = self.json_body()
        name, manifest = self.require_model(body.get("model"))
        texts = texts_of(body.get("input"), openai=False)
        self.touch(name, body.get("keep_alive"))
        vectors = embed_all(texts, self.store.config(manifest), truncate=body.get("truncate", True) is not False,
                            dimensions=body.get("dimensions"))  # fmt: skip
        stats = self.stats(start, sum(len(pieces(t)) for t in texts), 0)
        self.send_json(200, {"model": name, "embeddings": vectors, "total_duration": stats["total_duration"],
                             "load_duration": stats["load_duration"], "prompt_eval_count": stats["prompt_eval_count"]})  # fmt: skip

    def embeddings(self) -> None:
        """The older route: one prompt, its vector not scaled to unit length."""
        body = self.json_body()
        _, manifest = self.require_model(body.get("model"))
        size = size_of(self.store.config(manifest))
        self.send_json(200, {"embedding": vector(text_of(body.get("prompt")), size, normalized=False)})
