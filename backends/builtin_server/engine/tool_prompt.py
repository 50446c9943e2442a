"""Tools and tool turns in the prompt.

A model whose chat template knows tools (a native family: hermes, llama3_json, mistral) gets them
through ``apply_chat_template(..., tools=...)``, and its assistant ``tool_calls`` and ``tool``
messages as they are. A model whose template knows neither (SmolLM2's ChatML is one; templates
that do not use the variable silently drop it) gets what llama.cpp's generic handler gives: the
tools described in the system message, the reply asked for as JSON (which the grammar in
``constraints`` then enforces), and earlier calls and results written into ordinary turns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from backends.builtin_server.engine.request import ChatMessage
from backends.builtin_server.tools.spec import ToolRequest


def generic_instructions(tools: ToolRequest) -> str:
    described = [{"name": f.name, **({"description": f.description} if f.description else {}),
                  "parameters": f.parameters} for f in tools.functions]  # fmt: skip
    call = '{"tool_calls": [{"name": "<function name>", "arguments": {<arguments>}}]}'
    if tools.choice == "auto":
        reply = f"Reply with JSON only: {call} to call functions, or {{\"response\": \"<your answer>\"}} to answer."
    elif tools.choice == "required":
        reply = f"Reply with JSON only, calling at least one function: {call}"
    else:
        reply = f'Reply with JSON only, calling the function {tools.choice}: {call.replace("<function name>", tools.choice)}'
    return f"You can call these functions:\n{json.dumps(described, ensure_ascii=False)}\n{reply}"


def template_messages(messages: Sequence[ChatMessage], tools: ToolRequest | None, *,
                      native: bool) -> list[dict[str, Any]]:  # fmt: skip
    """The messages for ``apply_chat_template``: as they are for a native family; else with the
    tool instructions in the system message and tool turns written as text."""
    if native:
        return [m.for_template() for m in messages]
    names = {c.id: c.name for m in messages for c in m.tool_calls}
    out = [_plain(m, names, as_json=tools is not None) for m in messages]
    if tools is not None:
        instructions = generic_instructions(tools)
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{instructions}".strip()}
        else:
            out.insert(0, {"role": "system", "content": instructions})
    return out


def _plain(message: ChatMessage, names: dict[str, str], *, as_json: bool) -> dict[str, Any]:
    """One turn as text a template that knows no tools renders: calls in the generic JSON, a tool
    result as a user turn (templates that enforce user/assistant alternation accept that). The
    result is JSON while the reply must be JSON too, and a plain sentence when it is free text
    (tool_choice none, or no tools): a small model copies the shape of what it has just read."""
    if message.role == "assistant" and message.tool_calls:
        calls = [{"name": c.name, "arguments": c.arguments_object()} for c in message.tool_calls]
        text = json.dumps({"tool_calls": calls}, ensure_ascii=False)
        return {"role": "assistant", "content": f"{message.content}\n{text}".strip()}
    if message.role == "tool":
        name = names.get(message.tool_call_id or "", "the function")
        if not as_json:
            return {"role": "user", "content": f"{name} returned: {message.content}"}
        result = {"name": name, "content": message.content}
        return {"role": "user", "content": json.dumps({"tool_response": result}, ensure_ascii=False)}
    return {"role": message.role, "content": message.content}
