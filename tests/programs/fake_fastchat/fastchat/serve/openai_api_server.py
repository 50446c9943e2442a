"""Fake FastChat OpenAI API server: lists the controller's models, answers chat with fixed text."""

from fastchat.serve._http import parser, post, serve

args = parser().parse_args()


def models(body: dict) -> tuple[int, object]:
    names = post(args.controller_address + "/list_models", {})["models"]
    return 200, {"object": "list", "data": [{"id": n, "object": "model"} for n in names]}


def chat(body: dict) -> tuple[int, object]:
    return 200, {"object": "chat.completion", "model": body.get("model"),
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": "fake reply"},
                              "finish_reason": "stop"}]}


serve(args.host, args.port, {("GET", "/v1/models"): models, ("POST", "/v1/chat/completions"): chat})
