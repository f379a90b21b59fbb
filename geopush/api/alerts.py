"""`GET /v1/alerts`: the store alerts outbox as ops and marketers see it (SPEC section 15).

The body an alert carries (a first name, a comment) is never listed: what went where, when,
and how each attempt ended is what ops need to fix a store's receiver.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg
from aiohttp import web

from geopush.alerts.outbox import LISTING
from geopush.api.body import field_error
from geopush.api.openapi import BY_STATS, PAGE, STORE_ID, documented, obj, page_of, text_queries
from geopush.api.pagination import page, page_params
from geopush.api.runtime import RUNTIME
from geopush.store.keyset import fetch_page
from geopush.timefmt import format_ts_or_none

_STATUSES = ("queued", "sent", "failed")
_TEXT = {"type": "string"}
_OPT = {"type": ["string", "null"]}
ALERT = obj(("id", "store_id", "type", "status", "attempts", "created_at"),
            id=_TEXT, store_id=_TEXT, type=_TEXT,
            status={"enum": list(_STATUSES)}, reason=_OPT, attempts={"type": "integer"},
            next_attempt_at=_OPT, last_error=_OPT,
            last_http_status={"type": ["integer", "null"]},
            created_at={"type": "string", "format": "date-time"}, sent_at=_OPT,
            finished_at=_OPT)


def alert_json(row: asyncpg.Record) -> dict[str, Any]:
    queued = row["status"] == "queued"
    return {
        "id": str(row["alert_id"]),
        "store_id": str(row["store_id"]),
        "type": row["kind"],
        "status": row["status"],
        "reason": row["reason"],
        "attempts": row["attempts"],
        "next_attempt_at": format_ts_or_none(row["next_attempt_at"]) if queued else None,
        "last_error": row["last_error"],
        "last_http_status": row["last_http_status"],
        "created_at": format_ts_or_none(row["created_at"]),
        "sent_at": format_ts_or_none(row["sent_at"]),
        "finished_at": format_ts_or_none(row["finished_at"]),
    }


@documented("List store alerts, newest first, with their attempts", auth=BY_STATS,
            query=(*PAGE, STORE_ID, *text_queries("status")), response=page_of(ALERT))
async def list_alerts(request: web.Request) -> web.Response:
    limit, cursor = page_params(request)
    status = request.query.get("status") or None
    if status is not None and status not in _STATUSES:
        raise field_error("status", "must be one of queued, sent, failed")
    store_id = None
    raw_store = request.query.get("store_id")
    if raw_store:
        try:
            store_id = UUID(raw_store)
        except ValueError:
            raise field_error("store_id", "must be an id") from None
    rows = await fetch_page(request.app[RUNTIME].pool, LISTING, limit, cursor,
                            {"status": status, "store_id": store_id})
    return web.json_response(page([alert_json(r) for r in rows], rows, limit, "alert_id"))


def routes() -> list[web.RouteDef]:
    return [web.get("/v1/alerts", list_alerts)]
