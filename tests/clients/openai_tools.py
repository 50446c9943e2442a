"""Runs inside a venv with the openai SDK (1.x): the round trip every tool-using app makes,
printing one JSON line: a call -> the tool's result as a `tool` message -> a final answer.

    python openai_tools.py BASE_URL MODEL [API_KEY]
"""

import json
import sys

from openai import OpenAI

base_url, model = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=base_url, api_key=sys.argv[3] if len(sys.argv) > 3 else "EMPTY")
tools = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
messages = [{"role": "user", "content": "What is the weather in Paris?"}]

first = client.chat.completions.create(model=model, messages=messages, tools=tools, tool_choice="required",
                                       max_tokens=64, temperature=0)
call = first.choices[0].message.tool_calls[0]
messages.append(first.choices[0].message.model_dump(exclude_none=True))
messages.append({"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C."})
final = client.chat.completions.create(model=model, messages=messages, tools=tools, tool_choice="none",
                                       max_tokens=48, temperature=0)
print(json.dumps({
    "finish_reasons": [first.choices[0].finish_reason, final.choices[0].finish_reason],
    "call": {"name": call.function.name, "arguments": json.loads(call.function.arguments)},
    "answer": final.choices[0].message.content,
}), flush=True)
