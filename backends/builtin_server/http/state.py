"""What every handler needs from the app: the engine and the names it serves under, plus JSON out."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Response, current_app

from backends.builtin_server.http.recent_requests import RecentRequests
from surfaces.response_store import ResponseStore

if TYPE_CHECKING:
    from backends.builtin_server.engine.scheduler import Engine

EXTENSION = "modelserve"


@dataclass(frozen=True)
class ServerState:
    engine: Engine
    served_name: str
    api_key: str | None
    created: int  # the model card's "created" (Unix seconds)
    recent: RecentRequests = field(default_factory=RecentRequests, compare=False)  # GET /modelserve/requests
    # previous_response_id's conversations (state, not configuration: not compared)
    responses: ResponseStore = field(default_factory=ResponseStore, compare=False)


def current_state() -> ServerState:
    """The state of the app handling the current request (create_app puts it in app.extensions)."""
    state = current_app.extensions.get(EXTENSION)
    if not isinstance(state, ServerState):
        raise RuntimeError(f"app.extensions[{EXTENSION!r}] is not set; build the app with create_app()")
    return state


def json_response(body: Any, status: int = 200) -> Response:
    # json.dumps keeps keys in the order built here (Flask's jsonify would sort them).
    return Response(json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json")
