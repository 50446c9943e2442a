"""Fake FastChat controller: keeps the names workers register; answers POST /list_models."""

from fastchat.serve._http import MODE, parser, serve

args = parser().parse_args()
models: list[str] = []


def register(body: dict) -> tuple[int, object]:
    models.extend(n for n in body["worker_status"]["model_names"] if n not in models)
    return 200, {}


serve(args.host, args.port, {("POST", "/list_models"): lambda b: (200, {"models": models}),
                             ("POST", "/register_worker"): register,
                             ("GET", "/test_connection"): lambda b: (200, "success")},
      mute=MODE == "controller-mute")
