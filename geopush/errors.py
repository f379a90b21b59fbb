"""What the domain refuses, said without HTTP.

Domain modules (geo, campaigns, crm, ingest, delivery, places, store) raise these; the API's
error middleware (`geopush.api.errors`) is the one place that turns each kind into a status
code and the `{"error": {"code", "message", "details"}}` answer. The CLI and the importers
show `message` as it is.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A refusal with a stable machine `code`, a human `message` and optional `details`."""

    code = "error"

    def __init__(
        self, message: str, *, code: str | None = None, details: list[Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details: list[Any] = details or []


class Invalid(DomainError):
    """A value that is malformed or out of range (HTTP 400); `field` names it when known."""

    code = "invalid"

    def __init__(self, field: str | None, message: str, *, code: str | None = None) -> None:
        self.field = field
        text = f"{field}: {message}" if field else message
        details = [{"field": field, "message": message}] if field else []
        super().__init__(text, code=code, details=details)


class Unprocessable(DomainError):
    """Well-formed, but unusable as it stands: a self-crossing fence, an unknown store (422)."""

    code = "unprocessable"


class Unauthorized(DomainError):
    """The caller's credential names no one (401)."""

    code = "unauthorized"


class Forbidden(DomainError):
    """The caller is known but may not do this (403)."""

    code = "forbidden"


class NotFound(DomainError):
    """The thing asked for does not exist (404)."""

    code = "not_found"

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found")
        self.what = what


class Conflict(DomainError):
    """The request contradicts what is stored, such as a duplicate key (409)."""

    code = "conflict"


class TooLarge(DomainError):
    """More than geopush takes in one go: features in an import, bytes in a body (413)."""

    code = "too_large"


class Busy(DomainError):
    """Every place for this kind of work is taken; try again after `retry_after_s` (429)."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s
