"""Deliveries: the outbox as ops see it, manual retries, and the app's opened/redeemed.

Ops read delivery records (never the message texts: they may hold a customer's first name)
and may queue a failed one again. The app reports what the customer did with a push; a
device only ever sees its own deliveries, so another device's id answers 404 exactly like
an unknown one and ids cannot be probed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from aiohttp import web

from geopush.api.auth import caller, require_device
from geopush.api.body import field_error, path_id
from geopush.api.openapi import BY_DEVICE, BY_OPS, DELIVERY, PAGE, documented, page_of, text_queries
from geopush.api.pagination import page, page_params
from geopush.api.runtime import RUNTIME
from geopush.codes import DeliveryStatus
from geopush.delivery.records import (
    LISTING,
    MAX_REASON_LEN,
    UUID_FILTERS,
    delivery_row,
    report,
    requeue,
)
from geopush.store.erasure import ERASED_DEVICE
from geopush.store.keyset import fetch_page
from geopush.timefmt import format_ts_or_none


def _iso(value: datetime | None) -> str | None:
    return format_ts_or_none(value)


def _str(value: object | None) -> str | None:
    return None if value is None else str(value)


def delivery_json(row: asyncpg.Record) -> dict[str, Any]:
    """A delivery record for ops: SPEC section 7's fields first, then what helps explain it.

    `next_attempt_at` is only meaningful while the delivery is queued, so it is null
    otherwise; `retries` counts manual retries (each one reset `attempts`).
    """
    queued = row["status"] == DeliveryStatus.QUEUED
    return {
        "id": str(row["delivery_id"]),
        "offer_id": str(row["offer_id"]),
        # An erased device's deliveries keep the nil UUID in their key: no device, null.
        "device_id": None if row["device_id"] == ERASED_DEVICE else str(row["device_id"]),
        "status": row["status"],
        "reason": row["reason"],
        "attempts": row["attempts"],
        "created_at": _iso(row["created_at"]),
        "sent_at": _iso(row["sent_at"]),
        "fcm_message_name": row["fcm_message_name"],
        "store_id": _str(row["store_id"]),
        "geofence_id": _str(row["geofence_id"]),
        "trigger": row["trigger"],
        "event_ts": _iso(row["event_ts"]),
        "next_attempt_at": _iso(row["next_attempt_at"]) if queued else None,
        "expires_at": _iso(row["expires_at"]),
        "finished_at": _iso(row["finished_at"]),
        "opened_at": _iso(row["opened_at"]),
        "redeemed_at": _iso(row["redeemed_at"]),
        "last_error": row["last_error"],
        "retries": row["retries"],
        "retried_at": _iso(row["retried_at"]),
    }



def _query_uuid(request: web.Request, key: str) -> UUID | None:
    raw = request.query.get(key)
    if not raw:
        return None
    try:
        return UUID(raw)
    except ValueError:
        raise field_error(key, "must be an id") from None


@documented("List deliveries", auth=BY_OPS,
            query=(*PAGE, *text_queries("status", "reason", "offer_id", "device_id")),
            response=page_of(DELIVERY))
async def list_deliveries(request: web.Request) -> web.Response:
    """Newest first, filtered by any of status, reason and the ids in `UUID_FILTERS`."""
    limit, cursor = page_params(request)
    equal: dict[str, Any] = {}
    status = request.query.get("status")
    if status:
        if status not in {s.value for s in DeliveryStatus}:
            raise field_error("status", "must be one of queued, sent, failed, cancelled")
        equal["status"] = status
    reason = request.query.get("reason")
    if reason:
        if len(reason) > MAX_REASON_LEN:
            raise field_error("reason", f"must be at most {MAX_REASON_LEN} characters")
        equal["reason"] = reason
    for key in UUID_FILTERS:
        equal[key] = _query_uuid(request, key)
    rows = await fetch_page(request.app[RUNTIME].pool, LISTING, limit, cursor, equal)
    return web.json_response(page([delivery_json(r) for r in rows], rows, limit, "delivery_id"))


@documented("One delivery", auth=BY_OPS, response=DELIVERY)
async def get_delivery(request: web.Request) -> web.Response:
    delivery_id = path_id(request, "delivery_id", "delivery")
    row = await delivery_row(request.app[RUNTIME].pool, delivery_id)
    return web.json_response(delivery_json(row))


@documented("Queue a failed delivery again", auth=BY_OPS, errors=(409,), response=DELIVERY)
async def retry_delivery(request: web.Request) -> web.Response:
    """Queue a failed delivery again, due now, with a fresh ttl window and no attempts.

    The window is the offer's current `ttl_s` from now: the old one has usually passed
    (that may be why it failed), and a retry that expired before the sender saw it would
    be no retry at all. 409 says why a delivery may not be retried
    (`geopush.delivery.records.retry_refusal`).
    """
    principal = caller(request)
    delivery_id = path_id(request, "delivery_id", "delivery")
    rt = request.app[RUNTIME]
    row = await requeue(rt.pool, delivery_id, principal.key_id, rt.now())
    return web.json_response(delivery_json(row))


async def _mark(request: web.Request, what: str) -> web.Response:
    device_id = await require_device(request)
    delivery_id = path_id(request, "delivery_id", "delivery")
    await report(request.app[RUNTIME].pool, delivery_id, device_id, what)
    return web.Response(status=204)


@documented("The notification was opened (idempotent)", auth=BY_DEVICE, status=204, media=None,
            errors=(409,))
async def mark_opened(request: web.Request) -> web.Response:
    """The customer opened the notification; the first report's time is kept.

    Only for a delivery that was sent (409 `not_sent` otherwise): the app key ships in every
    app, so an app's word alone must not count opens for pushes that never went out.
    """
    return await _mark(request, "opened")


@documented("The offer was redeemed (idempotent)", auth=BY_DEVICE, status=204, media=None,
            errors=(409,))
async def mark_redeemed(request: web.Request) -> web.Response:
    """The customer redeemed the offer; the first report's time is kept.

    Does not imply `opened`: an offer can be shown at the till from the app's inbox.
    """
    return await _mark(request, "redeemed")


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1/deliveries", list_deliveries),
        web.get("/v1/deliveries/{delivery_id}", get_delivery),
        web.post("/v1/deliveries/{delivery_id}/retry", retry_delivery),
        web.post("/v1/deliveries/{delivery_id}/opened", mark_opened),
        web.post("/v1/deliveries/{delivery_id}/redeemed", mark_redeemed),
    ]
