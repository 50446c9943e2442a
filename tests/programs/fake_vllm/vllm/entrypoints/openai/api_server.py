"""Fake vLLM OpenAI server: takes vLLM's flags, lists the served name, answers chat with fixed text."""

import argparse

from fastchat.serve._http import serve

parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True)
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=8000)
parser.add_argument("--served-model-name")
args, _ = parser.parse_known_args()  # --enforce-eager, --dtype, ...: accepted as vLLM accepts them
served = args.served_model_name or args.model


def models(body: dict) -> tuple[int, object]:
    return 200, {"object": "list", "data": [{"id": served, "object": "model"}]}


def chat(body: dict) -> tuple[int, object]:
    if body.get("model") != served:
        return 404, {"error": {"message": f"The model `{body.get('model')}` does not exist."}}
    return 200, {"object": "chat.completion", "model": served,
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": "fake vllm reply"},
                              "finish_reason": "stop"}]}


serve(args.host, args.port, {("GET", "/v1/models"): models, ("POST", "/v1/chat/completions"): chat})
