"""Reading and checking request bodies: every problem becomes a 400 naming the field.

Reading is bounded in size and in time: a body larger than its limit is refused with 413 as
soon as that is known (from Content-Length, or once that many bytes arrived), and a client
that stops sending for `[limits] body_timeout_s` gets 408. Decoding a large JSON body runs
in a thread, so it never holds the event loop that `/healthz` and the pings share.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from uuid import UUID

from aiohttp import web

from geopush.api.errors import ApiError, bad_request, not_found
from geopush.runtime import RUNTIME

_MISSING = object()

#: Bytes asked of the connection at a time.
READ_CHUNK = 64 * 1024
#: JSON bodies up to this size are decoded on the event loop (well under a millisecond);
#: larger ones in a thread.
_INLINE_DECODE_BYTES = 64 * 1024
# Outside a geopush app (no runtime): the SPEC defaults.
_DEFAULT_BODY_TIMEOUT_S = 30.0
_DEFAULT_MAX_BODY_BYTES = 1024 * 1024


async def read_json(request: web.Request, limit: int | None = None) -> Any:
    """The decoded JSON body; 413 past `[limits] max_body_bytes` (or `limit`), 408 when the
    body stalls, 400 when not JSON.

    `limit` lets an import read a body larger than ordinary requests may send.
    """
    raw = await read_body(request, limit)
    if not raw:
        raise bad_request("request body is empty; expected JSON")
    if len(raw) <= _INLINE_DECODE_BYTES:
        return _decode_json(raw)
    return await asyncio.to_thread(_decode_json, raw)


def _decode_json(raw: bytes) -> Any:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise bad_request("request body is not valid JSON: nested too deeply") from None
    if _has_unstorable_text(value):
        raise bad_request("request body has a NUL character or a lone surrogate in a string")
    return value


async def read_body(request: web.Request, limit: int | None = None) -> bytes:
    """The whole body (at most `limit` bytes, default `[limits] max_body_bytes`)."""
    return b"".join([chunk async for chunk in body_chunks(request, limit)])


async def body_chunks(request: web.Request, limit: int | None = None,
                      *, what: str = "body") -> AsyncIterator[bytes]:
    """The body in chunks as they arrive: 413 past `limit` bytes (before reading anything
    when Content-Length says so), 408 when no byte arrives for `[limits] body_timeout_s`.

    The timeout is between reads, as nginx's `client_body_timeout`: a slow but moving
    upload of a large import is fine; a client that stops is cut.
    """
    rt = request.app.get(RUNTIME)
    if limit is None:
        limit = rt.config.limits.max_body_bytes if rt else _DEFAULT_MAX_BODY_BYTES
    if request.content_length is not None and request.content_length > limit:
        raise too_large(what, limit)
    idle = rt.config.limits.body_timeout_s if rt else _DEFAULT_BODY_TIMEOUT_S
    received = 0
    while True:
        try:
            async with asyncio.timeout(idle):
                chunk = await request.content.read(READ_CHUNK)
        except TimeoutError:
            raise ApiError(408, "timeout", f"the request body stalled: nothing received for "
                           f"{idle:g} s ([limits] body_timeout_s)") from None
        if not chunk:
            return
        received += len(chunk)
        if received > limit:
            raise too_large(what, limit)
        yield chunk


def too_large(what: str, limit: int) -> ApiError:
    return ApiError(413, "too_large", f"{what} larger than {limit} bytes")


def _has_unstorable_text(value: Any) -> bool:
    """Strings PostgreSQL text cannot hold (NUL) or UTF-8 cannot encode (lone surrogates)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


async def read_object(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    return body


def field_error(field: str, message: str) -> ApiError:
    return bad_request(f"{field}: {message}", [{"field": field, "message": message}])


def get_str(
    body: dict[str, Any], key: str, *, required: bool = False, default: Any = None,
    max_len: int = 1000, nullable: bool = True,
) -> Any:
    value = body.get(key, _MISSING)
    if value is _MISSING or (value is None and nullable and not required):
        if required:
            raise field_error(key, "is required")
        return default
    if not isinstance(value, str):
        raise field_error(key, "must be a string")
    if required and not value.strip():
        raise field_error(key, "must not be empty")
    if len(value) > max_len:
        raise field_error(key, f"must be at most {max_len} characters")
    return value


def get_bool(body: dict[str, Any], key: str, *, required: bool = False, default: Any = None) -> Any:
    value = body.get(key, _MISSING)
    if value is _MISSING:
        if required:
            raise field_error(key, "is required")
        return default
    if not isinstance(value, bool):
        raise field_error(key, "must be true or false")
    return value


def get_number(
    body: dict[str, Any], key: str, *, required: bool = False, default: Any = None,
    lo: float | None = None, hi: float | None = None, integer: bool = False,
) -> Any:
    value = body.get(key, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise field_error(key, "is required")
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise field_error(key, "must be a number")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        finite = False
    if not finite:
        raise field_error(key, "must be a finite number in range")
    if integer and value != int(value):
        raise field_error(key, "must be a whole number")
    if lo is not None and value < lo:
        raise field_error(key, f"must be at least {lo:g}")
    if hi is not None and value > hi:
        raise field_error(key, f"must be at most {hi:g}")
    return int(value) if integer else float(value)


def parse_time(value: Any, field: str) -> datetime:
    """An RFC 3339 time with an offset (a bare date is refused: it has no zone)."""
    if not isinstance(value, str):
        raise field_error(field, "must be an RFC 3339 time string")
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise field_error(field, f"not an RFC 3339 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise field_error(field, "needs a time zone offset (e.g. Z or +02:00)")
    return parsed


def path_id(request: web.Request, name: str, what: str) -> UUID:
    """The UUID in the path; a malformed one is simply a `what` that does not exist (404)."""
    try:
        return UUID(request.match_info[name])
    except ValueError:
        raise not_found(what) from None


def query_int(request: web.Request, key: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise field_error(key, "must be a whole number") from None
    if not lo <= value <= hi:
        raise field_error(key, f"must be between {lo} and {hi}")
    return value
