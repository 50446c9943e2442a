"""What the Anthropic and Responses surfaces share here: the translator's refusals as this
server's ApiError, and chat-side refusals worded with the surface's own field names."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar

from backends.builtin_server.errors import ApiError
from surfaces.errors import SurfaceError

P = ParamSpec("P")
R = TypeVar("R")


def api_error(err: SurfaceError) -> ApiError:
    return ApiError(err.status, err.message, param=err.param, code=err.code)


def translated(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Call the translator; a SurfaceError leaves as the ApiError the app writes in the surface's shape."""
    try:
        return fn(*args, **kwargs)
    except SurfaceError as err:
        raise api_error(err) from None


def renamed(err: ApiError, names: Mapping[str, str]) -> ApiError:
    """A refusal from the chat path that names a chat field, renamed to the surface's field."""
    for chat_name, own in names.items():
        if err.param == chat_name or err.message.startswith(chat_name + " "):
            message = own + err.message[len(chat_name) :] if err.message.startswith(chat_name) else err.message
            return ApiError(err.status, message, error_type=err.error_type, param=own, code=err.code,
                            retry_after=err.retry_after)  # fmt: skip
    return err


def chat_side(fn: Callable[P, R], names: Mapping[str, str], *args: P.args, **kwargs: P.kwargs) -> R:
    try:
        return fn(*args, **kwargs)
    except ApiError as err:
        raise renamed(err, names) from None


def error_message(chunk: Mapping[str, Any]) -> str | None:
    """The message of a stream's late failure (an error object instead of a chunk), else None."""
    error = chunk.get("error")
    return str(error.get("message")) if isinstance(error, dict) else None

