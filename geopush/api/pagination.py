"""Keyset pagination: `limit` and an opaque `cursor`, answered as `{"items", "next_cursor"}`.

The cursor is the last row's (created_at, id), so pages stay stable while rows are added.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any
from uuid import UUID

from aiohttp import web

from geopush.api.body import field_error, query_int
from geopush.timefmt import format_ts, parse_rfc3339

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def page_params(request: web.Request) -> tuple[int, tuple[datetime, UUID] | None]:
    limit = query_int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    raw = request.query.get("cursor")
    if not raw:
        return limit, None
    try:
        created, ident = json.loads(base64.urlsafe_b64decode(raw.encode()).decode())
        when = parse_rfc3339(created)
        if when is None:
            raise ValueError("not a time")
        return limit, (when, UUID(ident))
    except (ValueError, TypeError):
        raise field_error("cursor", "is not a cursor this server gave") from None


def page(items: list[dict[str, Any]], rows: list[Any], limit: int, id_key: str) -> dict[str, Any]:
    """Build the answer from `limit + 1` fetched rows: the extra one proves a next page."""
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        token = json.dumps([format_ts(last["created_at"]), str(last[id_key])])
        next_cursor = base64.urlsafe_b64encode(token.encode()).decode()
        items = items[:limit]
    return {"items": items, "next_cursor": next_cursor}
