"""The server's one refusal type: an HTTP status, a message that names the fix, and the field at fault.

The engine raises it (a prompt too long for the context, a full queue) and so does the API layer
(a bad field). Each API surface writes it in its own error shape; ``body()`` is OpenAI's, the
default (``{"error": {"message", "type", "param", "code"}}``), because OpenAI SDKs (and AgentScope
through them) show ``message`` to the user.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request the server refuses, with the HTTP status and an OpenAI-shaped error body:
    ``{"error": {"message", "type", "param", "code"}}`` as OpenAI's published schema has it
    (``param``: the field at fault; ``code``: a short name, or null)."""

    def __init__(self, status: int, message: str, *, error_type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, retry_after: int | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.param = param
        self.code = code
        self.retry_after = retry_after  # seconds, for a 503: sent as Retry-After

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param, "code": self.code}}


def model_not_found(name: object) -> ApiError:
    # vLLM's exact wording and type, so clients that special-case it keep working; OpenAI's code.
    return ApiError(404, f"The model `{name}` does not exist.", error_type="NotFoundError", param="model",
                    code="model_not_found")  # fmt: skip
