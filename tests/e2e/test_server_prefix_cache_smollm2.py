"""The prefix cache on the real SmolLM2 (in-process): an agent's second step, with tools and with a
JSON reply held to a grammar, answers the same with and without the cache, token for token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backends.builtin_server.engine.request import ChatMessage, GenerationRequest, Sampling, TokenBudget
from backends.builtin_server.tools.spec import Function, ResponseFormat, ToolCall, ToolRequest

pytestmark = pytest.mark.e2e

SYSTEM = ("You are a careful assistant for a travel agency. You answer in one short sentence, you never invent "
          "prices, and when a question needs live data you call the matching tool. " * 3)  # fmt: skip
WEATHER = Function("get_weather", "Current weather in a city.",
                   {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})  # fmt: skip
GREEDY = Sampling(do_sample=False)


@pytest.fixture(scope="module")
def smol(smollm2_dir: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(2)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(smollm2_dir)


def step(*turns: ChatMessage, max_new: int = 24, **kwargs: Any) -> GenerationRequest:
    return GenerationRequest(sampling=GREEDY, budget=TokenBudget(field="max_tokens", max_new_tokens=max_new),
                             messages=(ChatMessage("system", SYSTEM), *turns), **kwargs)  # fmt: skip


def test_agent_steps_with_tools_and_json_answer_the_same_with_the_cache(make_engine: Any,
                                                                        smol: tuple[Any, Any]) -> None:  # fmt: skip
    model, tok = smol
    cached, plain = make_engine(tok, model=model), make_engine(tok, model=model, prefix_cache=False)
    cached.start()
    plain.start()
    tools = ToolRequest((WEATHER,), "required")
    ask = ChatMessage("user", "What is the weather in Paris?")
    call = ToolCall("get_weather", '{"city": "Paris"}', "call_1")
    steps = [
        step(ask, tools=tools, max_new=40),  # a forced call: grammar-constrained
        step(ask, ChatMessage("assistant", "", tool_calls=(call,)),  # the tool's result comes back
             ChatMessage("tool", "Sunny, 21 C", tool_call_id="call_1"), max_new=24),
        step(ask, ChatMessage("assistant", "It is sunny."), ChatMessage("user", "Give it as JSON."), max_new=40,
             response_format=ResponseFormat("json_schema", {"type": "object", "properties": {
                 "city": {"type": "string"}, "sky": {"type": "string"}}, "required": ["city", "sky"]}, True)),
    ]  # fmt: skip
    got = [cached.submit(s).result(timeout=300) for s in steps]
    want = [plain.submit(s).result(timeout=300) for s in steps]
    def reply(c: Any) -> tuple[str | None, list[tuple[str, str]]]:  # a call's id is random: its name and arguments
        return c.text, [(t.name, t.arguments) for t in c.tool_calls]

    assert [reply(c) for c in got] == [reply(c) for c in want]
    assert got[0].tool_calls and got[0].tool_calls[0].name == "get_weather"
    assert all(c.cached_tokens > 0 for c in got[1:])  # each later step found the earlier one's prefix
    assert all(c.cached_tokens == 0 for c in want)
