"""What every handler needs from the app: the engine and the names it serves under, plus JSON out.

A server runs one engine for its task: the generation scheduler (task generate), or the pooling
engine of an embed or rerank server. Handlers ask for the one their surface needs
(``state.engine``, ``state.pooling(task)``); on a server of another task that is a 400 naming the
task the model serves, so every generation route (present or future) refuses an embedding model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

from flask import Response, current_app, request

from backends.builtin_server.errors import ApiError
from backends.builtin_server.http.recent_requests import RecentRequests
from surfaces.response_store import ResponseStore

if TYPE_CHECKING:
    from backends.builtin_server.engine.pooling import PoolingEngine
    from backends.builtin_server.engine.scheduler import Engine

EXTENSION = "modelserve"
# What each task serves, for the refusal's message.
SERVES = {"generate": "chat and completions (POST /v1/chat/completions, /v1/completions, /v1/messages, /v1/responses, /llm/)",
          "embed": "embeddings (POST /v1/embeddings)", "rerank": "rerank (POST /v1/rerank)"}  # fmt: skip


class Metered(Protocol):
    def count_request(self, route: str, status: int) -> None: ...

    def render(self) -> str: ...


class Runner(Protocol):
    """The engine a server runs, as the HTTP side sees it: alive, stoppable, counted."""

    @property
    def metrics(self) -> Metered: ...

    def alive(self) -> bool: ...

    def stop(self, timeout: float = ...) -> None: ...


@dataclass(frozen=True)
class ServerState:
    runner: Runner
    served_name: str
    api_key: str | None
    created: int  # the model card's "created" (Unix seconds)
    task: str = "generate"
    recent: RecentRequests = field(default_factory=RecentRequests, compare=False)  # GET /modelserve/requests
    # previous_response_id's conversations (state, not configuration: not compared)
    responses: ResponseStore = field(default_factory=ResponseStore, compare=False)

    @property
    def engine(self) -> Engine:
        """The generation scheduler (a 400 naming the task on an embed or rerank server)."""
        if self.task != "generate":
            raise self._wrong_task("a generation model (task generate)")
        return cast("Engine", self.runner)

    def pooling(self, task: str) -> PoolingEngine:
        """The pooling engine of a ``task`` server (a 400 naming the task on any other)."""
        if self.task != task:
            raise self._wrong_task(f"{'an embedding' if task == 'embed' else 'a rerank'} model (task {task})")
        return cast("PoolingEngine", self.runner)

    def _wrong_task(self, needs: str) -> ApiError:
        return ApiError(400, f"{request.method} {request.path} needs {needs}, but {self.served_name!r} serves task "
                             f"{self.task}: {SERVES.get(self.task, self.task)}; start a deployment of that task for it",
                        code="wrong_task")  # fmt: skip


def current_state() -> ServerState:
    """The state of the app handling the current request (create_app puts it in app.extensions)."""
    state = current_app.extensions.get(EXTENSION)
    if not isinstance(state, ServerState):
        raise RuntimeError(f"app.extensions[{EXTENSION!r}] is not set; build the app with create_app()")
    return state


def json_response(body: Any, status: int = 200) -> Response:
    # json.dumps keeps keys in the order built here (Flask's jsonify would sort them).
    return Response(json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json")
