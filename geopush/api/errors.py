"""Every error leaves as JSON: `{"error": {"code", "message", "details"}}`.

Handlers raise `ApiError`; domain code raises `geopush.errors` exceptions, which are given
their HTTP status here and only here (`DOMAIN_STATUS`). This middleware also turns aiohttp's
own HTTP errors (unknown route, wrong method, body too large) and database outages into the
same shape, and hides anything unexpected behind a logged 500, so a client never sees an
HTML page or a traceback.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import web

from geopush import errors
from geopush.store.database import PoolTimeout

log = logging.getLogger(__name__)

# asyncpg's own "invalid input for query argument" (an InterfaceError, so it must be caught
# before the database-unavailable branch below).
_ClientDataError = asyncpg.exceptions._base.DataError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    409: "conflict",
    413: "too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
    503: "unavailable",
}


# The one mapping from domain refusals to HTTP; the most specific class wins.
DOMAIN_STATUS: dict[type[errors.DomainError], int] = {
    errors.Invalid: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.Unprocessable: 422,
    errors.TooLarge: 413,
    errors.Busy: 429,
}


def domain_status(exc: errors.DomainError) -> int:
    for cls in type(exc).__mro__:
        if issubclass(cls, errors.DomainError) and cls in DOMAIN_STATUS:
            return DOMAIN_STATUS[cls]
    return 400


class ApiError(Exception):
    """An answer other than success, with its HTTP status and a stable machine code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers or {}


def bad_request(message: str, details: list[Any] | None = None) -> ApiError:
    return ApiError(400, "invalid", message, details)


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def error_response(
    status: int, code: str, message: str, details: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": details or []}}
    return web.json_response(body, status=status, headers=headers)


def _client_gone(request: web.Request) -> bool:
    """True once the client's connection is closed or closing.

    An OSError is a database outage only while the client is still there: the same
    ConnectionResetError comes from a body the client stopped sending. (A disconnect that
    cancels the handler raises asyncio.CancelledError, which is not an Exception and is
    never caught here.)
    """
    transport = request.transport
    return transport is None or transport.is_closing()


# The longest request target geopush answers; a longer one (up to the HTTP parser's line
# limit, set in `geopush.app`) gets a JSON 414 here instead of the parser's plain text.
MAX_URL_BYTES = 8 * 1024


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if len(request.raw_path) > MAX_URL_BYTES:
        return error_response(414, "uri_too_long",
                              f"the URL is longer than {MAX_URL_BYTES} bytes")
    try:
        return await handler(request)
    except ApiError as exc:
        response = error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
        if exc.status == 408:
            # The rest of a stalled body may never come: do not wait for it to drain.
            response.force_close()
        return response
    except errors.DomainError as exc:
        headers = ({"Retry-After": str(exc.retry_after_s)} if isinstance(exc, errors.Busy)
                   else None)
        return error_response(domain_status(exc), exc.code, exc.message, exc.details, headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "error")
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return error_response(exc.status, code, exc.reason or code, headers=headers)
    except PoolTimeout:
        # Every connection is busy: say so at once rather than queue behind the backlog.
        log.warning("database pool busy: no connection within the acquire timeout")
        return error_response(503, "unavailable", "server busy, try again",
                              headers={"Retry-After": "2"})
    except (asyncpg.exceptions.DataError, _ClientDataError) as exc:
        # SQLSTATE class 22 (or asyncpg refusing to encode an argument): a value the client
        # sent that PostgreSQL cannot hold, such as a NUL character or an out-of-range number.
        return error_response(400, "invalid", f"a value cannot be stored: {type(exc).__name__}")
    except OSError as exc:
        if _client_gone(request):
            # The client hung up (its body cut short: aiohttp's ConnectionResetError
            # "Connection lost"). Nobody will read an answer, and the database is fine.
            log.debug("client disconnected: %s", type(exc).__name__)
            return error_response(400, "client_disconnected", "the client disconnected")
        log.warning("database unavailable: %s", type(exc).__name__)
        return error_response(503, "unavailable", "database unavailable, try again",
                              headers={"Retry-After": "5"})
    except (asyncpg.exceptions.PostgresConnectionError,
            asyncpg.exceptions.CannotConnectNowError, asyncpg.exceptions.TooManyConnectionsError,
            # SQLSTATE class 57: the server is shutting down or restarting under us.
            asyncpg.exceptions.OperatorInterventionError,
            # asyncpg's "unexpected protocol state", seen when a connection is cut in the
            # middle of a statement by a server shutting down.
            asyncpg.exceptions.InternalClientError,
            asyncpg.InterfaceError) as exc:
        log.warning("database unavailable: %s", type(exc).__name__)
        return error_response(503, "unavailable", "database unavailable, try again",
                              headers={"Retry-After": "5"})
    except Exception as exc:
        # Type and place only: exception texts can carry bound values (tokens, names), and
        # the path can carry a customer id. The full traceback is at DEBUG.
        route = request.match_info.route.resource
        where = traceback.extract_tb(exc.__traceback__)[-1]
        log.error("unhandled %s on %s %s at %s:%s", type(exc).__name__, request.method,
                  route.canonical if route else "?", where.filename, where.lineno)
        log.debug("unhandled error", exc_info=True)
        return error_response(500, "internal", "internal error")
