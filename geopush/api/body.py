"""Reading and checking request bodies: every problem becomes a 400 naming the field.

Reading is bounded in size and in time: a body larger than its limit is refused with 413 as
soon as that is known (from Content-Length, or once that many bytes arrived), and a client
that stops sending for `[limits] body_timeout_s` gets 408. Decoding a large JSON body runs
in a thread, so it never holds the event loop that `/healthz` and the pings share.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel

from geopush.api.errors import ApiError, bad_request, not_found
from geopush.api.json_depth import MAX_DEPTH, json_depth_exceeds, nested_deeper_than
from geopush.api.runtime import RUNTIME
from geopush.api.schema import parse_model
from geopush.timefmt import parse_rfc3339

# A single field's error, as the domain raises it (importers use it too); for handlers'
# checks beyond what a request model says.
from geopush.validate import field_error, has_unstorable_text

M = TypeVar("M", bound=BaseModel)

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
    raw = await _read_raw(request, limit)
    if not raw:
        raise bad_request("request body is empty; expected JSON")
    if len(raw) <= _INLINE_DECODE_BYTES:
        return _decode_json(raw)
    return await asyncio.to_thread(_decode_json, raw)


def _decode_json(raw: bytes) -> Any:
    """Decode, refusing JSON nested deeper than MAX_DEPTH and text PostgreSQL cannot hold.

    A small body (every ping batch) is decoded first and its depth measured on the decoded
    containers, level by level; json's own recursion guard refuses the absurdly deep.
    A large one (an import) has its bytes scanned before decoding, in numpy, since walking
    millions of coordinate lists in Python would cost more than the decoding. Text needs a
    look only when the body holds a `\\u0000` or a surrogate escape: JSON allows NUL and
    lone surrogates in no other form.
    """
    scanned = len(raw) > _INLINE_DECODE_BYTES
    if scanned and json_depth_exceeds(raw, MAX_DEPTH):
        raise _too_deep()
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise _too_deep() from None
    if not scanned and nested_deeper_than(value, MAX_DEPTH):
        raise _too_deep()
    if _RISKY_ESCAPE.search(raw) and has_unstorable_text(value):
        raise bad_request("request body has a NUL character or a lone surrogate in a string")
    return value


def _too_deep() -> ApiError:
    return bad_request(f"request body is nested deeper than {MAX_DEPTH} levels")


# The only ways a JSON text can carry NUL or a lone surrogate: as \u escapes.
_RISKY_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


async def _read_raw(request: web.Request, limit: int | None = None) -> bytes:
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
    # Past a grace period, the body must keep up an average of `body_min_rate_bytes_per_s`
    # (as Apache's mod_reqtimeout MinRate): a byte every few seconds never stalls for the
    # idle timeout, yet would hold an import slot for days.
    min_rate = rt.config.limits.body_min_rate_bytes_per_s if rt else 0
    grace = rt.config.limits.body_min_rate_grace_s if rt else 0.0
    loop = asyncio.get_running_loop()
    started = loop.time()
    received = 0
    while True:
        wait = idle
        if min_rate:
            wait = min(wait, max(started + grace + received / min_rate - loop.time(), 0.001))
        try:
            async with asyncio.timeout(wait):
                chunk = await request.content.read(READ_CHUNK)
        except TimeoutError:
            if wait < idle:
                raise ApiError(408, "timeout", f"the request body is too slow: under"
                               f" {min_rate} bytes/s on average ([limits]"
                               " body_min_rate_bytes_per_s)") from None
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


async def read_model(request: web.Request, model: type[M], limit: int | None = None) -> M:
    """The JSON body validated as `model`: a 400 listing each bad field by its dotted path."""
    return parse_model(model, await read_json(request, limit))


async def read_body(request: web.Request, model: type[BaseModel],
                    limit: int | None = None) -> dict[str, Any]:
    """The fields the client sent, checked by `model`, as plain JSON values.

    For handlers whose domain code takes a mapping (it may re-check semantics shared with the
    importers); absent fields stay absent, so PATCH can tell "unchanged" from null.
    """
    parsed = await read_model(request, model, limit)
    return parsed.model_dump(mode="json", exclude_unset=True)


async def read_object(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    return body


def parse_time(value: Any, field: str) -> datetime:
    """An RFC 3339 time with an offset, in years 1 to 9998 (for query parameters)."""
    if not isinstance(value, str):
        raise field_error(field, "must be an RFC 3339 time string")
    parsed = parse_rfc3339(value)
    if parsed is None:
        raise field_error(field, "must be an RFC 3339 time with an offset (e.g. Z or +02:00),"
                                 " in the years 1 to 9998")
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
