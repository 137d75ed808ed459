"""A request the server refuses, with the HTTP status and a message that names the problem."""

from __future__ import annotations

# TEI's error_type for each status (its clients match on these).
TEI_ERROR_TYPES = {401: "Unauthorized", 404: "NotFound", 405: "NotFound", 408: "Timeout", 413: "Validation", 422: "Validation",
                   429: "Overloaded", 500: "Backend", 503: "Unhealthy"}  # fmt: skip


class RequestError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field

    def openai_body(self) -> dict:
        """OpenAI's error object, which its client raises as APIStatusError with this message."""
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": self.message, "type": kind, "param": self.field, "code": self.status}}

    def tei_body(self) -> dict:
        return {"error": self.message, "error_type": TEI_ERROR_TYPES.get(self.status, "Validation")}
