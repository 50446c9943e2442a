"""Runs in a venv with the openai SDK: ask one question with a client configured only by the
environment (OPENAI_BASE_URL, OPENAI_API_KEY: the lines `modelserve config --format openai-env`
printed); print one JSON line.

    python openai_env.py MODEL QUESTION
"""

import json
import sys

import openai

model, question = sys.argv[1:]
client = openai.OpenAI()  # reads OPENAI_BASE_URL and OPENAI_API_KEY
reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                       temperature=0, max_tokens=48)
print(json.dumps({"base_url": str(client.base_url), "text": reply.choices[0].message.content}), flush=True)
