"""Reading and checking request bodies: every problem becomes a 400 naming the field."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from aiohttp import web
from pydantic import BaseModel

from geopush.api.errors import ApiError, bad_request, not_found
from geopush.api.json_depth import MAX_DEPTH, json_depth_exceeds
from geopush.api.schema import parse_model
from geopush.timefmt import parse_rfc3339

# A single field's error, as the domain raises it (importers use it too); for handlers'
# checks beyond what a request model says.
from geopush.validate import field_error

M = TypeVar("M", bound=BaseModel)


async def read_json(request: web.Request, limit: int | None = None) -> Any:
    """The decoded JSON body; 413 past `client_max_size` (or `limit`), 400 when not JSON.

    `limit` lets an import read a body larger than ordinary requests may send.
    """
    raw = await request.read() if limit is None else await _read_limited(request, limit)
    if not raw:
        raise bad_request("request body is empty; expected JSON")
    if json_depth_exceeds(raw, MAX_DEPTH):
        raise bad_request(f"request body is nested deeper than {MAX_DEPTH} levels")
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"request body is not valid JSON: {exc}") from None
    if _has_unstorable_text(value):
        raise bad_request("request body has a NUL character or a lone surrogate in a string")
    return value


async def _read_limited(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "too_large", f"body larger than {limit} bytes")
    parts, size = [], 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "too_large", f"body larger than {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


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
