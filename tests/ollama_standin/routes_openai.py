"""The OpenAI-compatible routes: /v1/models, /v1/models/{model}, /v1/chat/completions,
/v1/completions and /v1/embeddings.

Built from Ollama docs/api/openai-compatibility.mdx and openai/openai.go: /v1/chat/completions
{id "chatcmpl-N", object "chat.completion", created, model, system_fingerprint "fp_ollama",
choices[{index, message{role, content}, finish_reason}], usage{prompt_tokens, completion_tokens,
total_tokens}}, streamed as SSE "data: {chat.completion.chunk with delta}" lines ending "data:
[DONE]" (stream_options.include_usage adds a chunk with empty choices and usage); /v1/completions
(text_completion); /v1/models {object "list", data[{id, object "model", created, owned_by}]};
/v1/models/{model}; /v1/embeddings; response_format json_object / json_schema honoured; errors {"error": {message, type (invalid_request_error |
not_found_error | api_error), param, code}} (written by the server's dispatch).
"""

from __future__ import annotations

import json
import time

from tests.ollama_standin.common import next_id
from tests.ollama_standin.embeddings import as_base64, embed_all, texts_of
from tests.ollama_standin.generation import (
    after_tool,
    as_int,
    formatted_reply,
    last_user,
    pieces,
    reply_for,
    text_of,
    tool_call_for,
)
from tests.ollama_standin.handler_base import BadRequest, BaseHandler
from tests.ollama_standin.store import parse_name


class OpenAIRoutes(BaseHandler):
    def v1_models(self) -> None:
        data = []
        for name, path in self.store.names():
            host, namespace, _, _ = parse_name(name)
            data.append({"id": name, "object": "model", "created": int(path.stat().st_mtime),
                         "owned_by": namespace})
        self.send_json(200, {"object": "list", "data": data})

    def v1_model(self, name: str) -> None:
        path = self.store.manifest_path(name)
        if not path.is_file():
            raise BadRequest(404, f'model "{name}" not found')
        _, namespace, _, _ = parse_name(name)
        self.send_json(200, {"id": name, "object": "model", "created": int(path.stat().st_mtime), "owned_by": namespace})

    def v1_chat(self) -> None:
        body = self.json_body()
        name, manifest = self.require_model(body.get("model"))
        if "embedding_length" in self.store.config(manifest):
            raise BadRequest(400, f'"{name}" does not support chat')
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest(400, "[] is too short - 'messages'")
        self.touch(name, None)
        limit = as_int(body.get("max_tokens") if body.get("max_tokens") is not None else body.get("max_completion_tokens"))
        tools = body.get("tools") if body.get("tool_choice") != "none" else None
        call = tool_call_for(tools, messages)
        if call is not None:
            self._v1_tool_call(body, call)
            return
        tool_result = after_tool(messages)
        prompt = f"the tool said {tool_result}" if tool_result is not None else last_user(messages)
        tokens, reason = reply_for(body.get("model") or name, prompt, limit)
        shaped = formatted_reply(body.get("response_format"), prompt)
        if shaped is not None:
            tokens, reason = pieces(shaped), "stop"
        prompt_tokens = sum(len(pieces(text_of(m.get("content")))) for m in messages if isinstance(m, dict))
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens),
                 "total_tokens": prompt_tokens + len(tokens)}  # fmt: skip
        ident, created, model = f"chatcmpl-{next_id()}", int(time.time()), body.get("model")
        head = {"id": ident, "created": created, "model": model, "system_fingerprint": "fp_ollama"}
        if not body.get("stream"):
            self.send_json(200, {**head, "object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "".join(tokens)}, "finish_reason": reason}],
                "usage": usage})  # fmt: skip
            return
        self.start_stream("text/event-stream")
        for token in tokens:
            self.sse({**head, "object": "chat.completion.chunk",
                      "choices": [{"index": 0, "delta": {"role": "assistant", "content": token}, "finish_reason": None}]})
        self.sse({**head, "object": "chat.completion.chunk",
                  "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": reason}]})
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            self.sse({**head, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        self.sse(b"[DONE]")
        self.end_stream()

    def _v1_tool_call(self, body: dict[str, object], call: dict[str, object]) -> None:
        """docs/api/openai-compatibility.mdx: tool_calls [{id, index, type, function {name, arguments
        (JSON text)}}], finish_reason "tool_calls"; streamed, the call comes in one delta."""
        entry = {"id": f"call_{next_id()}", "index": 0, "type": "function",
                 "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])}}  # fmt: skip
        head = {"id": f"chatcmpl-{next_id()}", "created": int(time.time()), "model": body.get("model"),
                "system_fingerprint": "fp_ollama"}  # fmt: skip
        if not body.get("stream"):
            message = {"role": "assistant", "content": "", "tool_calls": [entry]}
            self.send_json(200, {**head, "object": "chat.completion", "choices": [
                {"index": 0, "message": message, "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 1, "total_tokens": 1}})  # fmt: skip
            return
        self.start_stream("text/event-stream")
        self.sse({**head, "object": "chat.completion.chunk", "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": "", "tool_calls": [entry]}, "finish_reason": None}]})
        self.sse({**head, "object": "chat.completion.chunk", "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": "tool_calls"}]})
        self.sse(b"[DONE]")
        self.end_stream()

    def v1_completions(self) -> None:
        body = self.json_body()
        name, _ = self.require_model(body.get("model"))
        prompt = text_of(body.get("prompt"))
        tokens, reason = reply_for(body.get("model") or name, prompt, as_int(body.get("max_tokens")))
        usage = {"prompt_tokens": len(pieces(prompt)), "completion_tokens": len(tokens),
                 "total_tokens": len(pieces(prompt)) + len(tokens)}  # fmt: skip
        head = {"id": f"cmpl-{next_id()}", "object": "text_completion", "created": int(time.time()),
                "model": body.get("model"), "system_fingerprint": "fp_ollama"}  # fmt: skip
        if not body.get("stream"):
            self.send_json(200, {**head, "choices": [{"text": "".join(tokens), "index": 0, "finish_reason": reason}],
                                 "usage": usage})
            return
        self.start_stream("text/event-stream")
        for token in tokens:
            self.sse({**head, "choices": [{"text": token, "index": 0, "finish_reason": None}]})
        self.sse({**head, "choices": [{"text": "", "index": 0, "finish_reason": reason}]})
        self.sse(b"[DONE]")
        self.end_stream()

    def v1_embeddings(self) -> None:
        body = self.json_body()
        _, manifest = self.require_model(body.get("model"))
        texts = texts_of(body.get("input"), openai=True)
        if not texts:
            raise BadRequest(400, "invalid input: an empty list")
        fmt = body.get("encoding_format") or "float"
        if fmt not in ("float", "base64"):
            raise BadRequest(400, f"invalid encoding_format: {fmt}")
        vectors = embed_all(texts, self.store.config(manifest), truncate=True, dimensions=body.get("dimensions"))
        count = sum(len(pieces(t)) for t in texts)
        data = [{"object": "embedding", "embedding": as_base64(v) if fmt == "base64" else v, "index": i}
                for i, v in enumerate(vectors)]  # fmt: skip
        self.send_json(200, {"object": "list", "data": data, "model": body.get("model"),
                             "usage": {"prompt_tokens": count, "total_tokens": count}})  # fmt: skip
