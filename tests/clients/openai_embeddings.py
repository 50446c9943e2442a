"""Runs inside a venv with the openai SDK (1.x): embeddings the way the SDK asks for them, one
JSON line per call.

    python openai_embeddings.py BASE_URL MODEL TEXT...

- "default": client.embeddings.create without encoding_format: the SDK sends "base64" and decodes
  the answer into floats; "raw" shows the body the server sent for that call;
- "float": encoding_format="float"; "dims": dimensions=len(vector) (the model's own size);
- "bad_dims": dimensions=8, "empty": input=[]: each an openai.BadRequestError (status, message).
"""

import json
import sys

import openai

base_url, model, texts = sys.argv[1], sys.argv[2], sys.argv[3:]
client = openai.OpenAI(base_url=base_url, api_key="EMPTY")


def show(kind, response):
    print(json.dumps({"kind": kind, "vectors": [d.embedding for d in response.data], "model": response.model,
                      "usage": response.usage.model_dump()}), flush=True)


raw = client.embeddings.with_raw_response.create(model=model, input=texts)
body = json.loads(raw.text)
print(json.dumps({"kind": "raw", "sent": json.loads(raw.http_request.content), "first": body["data"][0]["embedding"]}))
show("default", raw.parse())
show("float", client.embeddings.create(model=model, input=texts, encoding_format="float"))
size = len(raw.parse().data[0].embedding)
show("dims", client.embeddings.create(model=model, input=texts[0], dimensions=size))
for kind, kwargs in (("bad_dims", {"input": texts[0], "dimensions": 8}), ("empty", {"input": []})):
    try:
        client.embeddings.create(model=model, **kwargs)
        print(json.dumps({"kind": kind, "status": 200}))
    except openai.BadRequestError as exc:
        print(json.dumps({"kind": kind, "status": exc.status_code, "message": exc.response.json()["error"]["message"]}), flush=True)
