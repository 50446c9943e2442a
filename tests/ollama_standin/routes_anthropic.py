"""Ollama's Anthropic-compatible route: POST /v1/messages (Ollama >= 0.14).

Built from Ollama docs/api/anthropic-compatibility.mdx: request fields model, max_tokens,
messages (text, tool_use, tool_result blocks; a string or blocks), system (a string or blocks),
stream, temperature, top_p, top_k, stop_sequences, tools, tool_choice, thinking, metadata; the
response {id, type "message", role, model, content [text | tool_use blocks], stop_reason (end_turn,
max_tokens, tool_use), usage {input_tokens, output_tokens}}; the stream's events message_start,
content_block_start, content_block_delta (text_delta, input_json_delta), content_block_stop,
message_delta, message_stop, ping, error; errors in Anthropic's shape (written by the server's
dispatch); the API key and anthropic-version are accepted and not checked. Token counts are
approximations (here: words). There is no /v1/messages/count_tokens (a 404).
"""

from __future__ import annotations

import json
from typing import Any

from tests.ollama_standin.common import compact, next_id
from tests.ollama_standin.generation import as_int, pieces, reply_for, text_of, tool_call_for
from tests.ollama_standin.handler_base import BadRequest, BaseHandler


def _chat_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The Messages conversation as the chat messages the stand-in's "generation" reads."""
    out: list[dict[str, Any]] = []
    for msg in body.get("messages") or []:
        content = msg.get("content") if isinstance(msg, dict) else None
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        results = [b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
        for block in results:
            out.append({"role": "tool", "content": text_of(block.get("content"))})
        texts = [b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text"]
        if texts or not results:
            out.append({"role": msg.get("role"), "content": "\n".join(texts)})
    return out


def _tools(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The tools the stand-in may call, narrowed by tool_choice (none: no call; tool: that one)."""
    tools = body.get("tools")
    raw = body.get("tool_choice")
    choice: dict[str, Any] = raw if isinstance(raw, dict) else {}
    if not isinstance(tools, list) or not tools or choice.get("type") == "none":
        return None
    if choice.get("type") == "tool":
        tools = [t for t in tools if isinstance(t, dict) and t.get("name") == choice.get("name")]
    return [{"function": {"name": t.get("name"), "parameters": t.get("input_schema")}} for t in tools] or None


class AnthropicRoutes(BaseHandler):
    def v1_messages(self) -> None:
        body = self.json_body()
        name, _ = self.require_model(body.get("model"))
        limit = as_int(body.get("max_tokens"))
        if limit is None or limit < 1:
            raise BadRequest(400, "max_tokens is required and must be at least 1")
        messages = _chat_messages(body)
        if not messages:
            raise BadRequest(400, "messages is required")
        self.touch(name, None)
        prompt_tokens = sum(len(pieces(m["content"])) for m in messages) + len(pieces(text_of(body.get("system"))))
        head = {"id": f"msg_{next_id()}", "type": "message", "role": "assistant", "model": body.get("model")}
        call = tool_call_for(_tools(body), messages)
        if call is not None:
            blocks = [{"type": "tool_use", "id": f"toolu_{next_id()}", "name": call["name"], "input": call["arguments"]}]
            tokens, reason = [json.dumps(call["arguments"])], "tool_use"
        else:
            last = messages[-1]
            prompt = f"the tool said {last['content']}" if last["role"] == "tool" else last["content"]
            tokens, reason = reply_for(body.get("model") or name, prompt, limit)
            reason = "max_tokens" if reason == "length" else "end_turn"
            blocks = [{"type": "text", "text": "".join(tokens)}]
        usage = {"input_tokens": prompt_tokens, "output_tokens": len(tokens)}
        if not body.get("stream"):
            self.send_json(200, {**head, "content": blocks, "stop_reason": reason, "stop_sequence": None, "usage": usage})
            return
        self._stream(head, blocks, tokens, reason, usage)

    def _event(self, name: str, data: dict[str, Any]) -> None:
        self.chunk(f"event: {name}\n".encode() + b"data: " + compact(data) + b"\n\n")

    def _stream(self, head: dict[str, Any], blocks: list[dict[str, Any]], tokens: list[str], reason: str,
                usage: dict[str, int]) -> None:  # fmt: skip
        self.start_stream("text/event-stream")
        start = {**head, "content": [], "stop_reason": None, "stop_sequence": None,
                 "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 0}}  # fmt: skip
        self._event("message_start", {"type": "message_start", "message": start})
        self._event("ping", {"type": "ping"})
        block = blocks[0]
        if block["type"] == "tool_use":
            self._event("content_block_start", {"type": "content_block_start", "index": 0,
                                                "content_block": {**block, "input": {}}})  # fmt: skip
            delta = {"type": "input_json_delta", "partial_json": tokens[0]}
            self._event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        else:
            self._event("content_block_start", {"type": "content_block_start", "index": 0,
                                                "content_block": {"type": "text", "text": ""}})  # fmt: skip
            for token in tokens:
                delta = {"type": "text_delta", "text": token}
                self._event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        self._event("content_block_stop", {"type": "content_block_stop", "index": 0})
        self._event("message_delta", {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None},
                                      "usage": {"output_tokens": usage["output_tokens"]}})  # fmt: skip
        self._event("message_stop", {"type": "message_stop"})
        self.end_stream()
