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
from geopush.api.errors import ApiError, not_found
from geopush.api.openapi import BY_DEVICE, BY_OPS, DELIVERY, PAGE, documented, page_of, text_queries
from geopush.api.pagination import page, page_params
from geopush.api.runtime import RUNTIME
from geopush.campaigns.offers import DEFAULT_TTL_S
from geopush.codes import DeliveryStatus
from geopush.delivery.outbox import OUTBOX_CHANNEL
from geopush.store.erasure import ERASED_DEVICE
from geopush.store.fatigue import reset as reset_fatigue
from geopush.store.keyset import Listing, fetch_page
from geopush.timefmt import format_ts_or_none, parse_rfc3339

_COLUMNS = (
    "delivery_id, offer_id, device_id, store_id, geofence_id, trigger, event_ts, status,"
    " reason, attempts, next_attempt_at, expires_at, created_at, sent_at, finished_at,"
    " fcm_message_name, opened_at, redeemed_at, last_error, retries, retried_at"
)
_GET = f"SELECT {_COLUMNS} FROM deliveries WHERE delivery_id = $1"
_LISTING = Listing("deliveries", _COLUMNS, "delivery_id", newest_first=True)
# Id filters of GET /v1/deliveries, each a query parameter named as its column. Values are
# always bound as parameters; only these fixed names reach the SQL text.
_UUID_FILTERS = ("offer_id", "device_id", "store_id", "geofence_id")
_MAX_REASON_LEN = 100

# What a retry needs to know, read under the delivery's row lock so a concurrent retry or
# sender cannot slip between the checks and the update.
_RETRY_FACTS = """
SELECT d.status, d.reason, d.device_id,
       dv.device_id IS NOT NULL AS device_exists,
       dv.fcm_token IS NOT NULL AND dv.fcm_token_active AS token_active,
       dv.consent_push, dv.consent_categories,
       o.offer_id IS NOT NULL AND o.deleted_at IS NULL AS offer_exists,
       o.status AS offer_status,
       o.definition ->> 'category' AS offer_category,
       o.definition ->> 'ends_at' AS offer_ends_at,
       (o.definition ->> 'ttl_s')::integer AS offer_ttl_s
FROM deliveries d
LEFT JOIN devices dv ON dv.device_id = d.device_id
LEFT JOIN offers o ON o.offer_id = d.offer_id
WHERE d.delivery_id = $1
FOR UPDATE OF d
"""
_REQUEUE = f"""
UPDATE deliveries
SET status = 'queued', reason = NULL, attempts = 0, next_attempt_at = now(),
    expires_at = now() + make_interval(secs => $2), lease_until = NULL, finished_at = NULL,
    retries = retries + 1, retried_at = now(), retried_by = $3
WHERE delivery_id = $1 AND status = 'failed'
RETURNING {_COLUMNS}
"""
# The first report is kept: `... IS NULL` in the UPDATE is re-checked on the locked row,
# so two reports racing each other cannot overwrite the first time. Only a delivery that was
# sent can be opened or redeemed (SPEC section 7), so an app cannot inflate results with the
# id of a queued or cancelled one. The status read tells an idempotent repeat (204) from a
# delivery that never went out (409) and from one this device does not have (404: null).
_MARK = """
WITH marked AS (
    UPDATE deliveries SET {column} = now()
    WHERE delivery_id = $1 AND device_id = $2 AND {column} IS NULL AND status = 'sent'
    RETURNING 1
)
SELECT status FROM deliveries WHERE delivery_id = $1 AND device_id = $2
"""
_MARK_OPENED = _MARK.format(column="opened_at")
_MARK_REDEEMED = _MARK.format(column="redeemed_at")


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
    """Newest first, filtered by any of status, reason and the ids in `_UUID_FILTERS`."""
    limit, cursor = page_params(request)
    equal: dict[str, Any] = {}
    status = request.query.get("status")
    if status:
        if status not in {s.value for s in DeliveryStatus}:
            raise field_error("status", "must be one of queued, sent, failed, cancelled")
        equal["status"] = status
    reason = request.query.get("reason")
    if reason:
        if len(reason) > _MAX_REASON_LEN:
            raise field_error("reason", f"must be at most {_MAX_REASON_LEN} characters")
        equal["reason"] = reason
    for key in _UUID_FILTERS:
        equal[key] = _query_uuid(request, key)
    rows = await fetch_page(request.app[RUNTIME].pool, _LISTING, limit, cursor, equal)
    return web.json_response(page([delivery_json(r) for r in rows], rows, limit, "delivery_id"))


@documented("One delivery", auth=BY_OPS, response=DELIVERY)
async def get_delivery(request: web.Request) -> web.Response:
    delivery_id = path_id(request, "delivery_id", "delivery")
    row = await request.app[RUNTIME].pool.fetchrow(_GET, delivery_id)
    if row is None:
        raise not_found("delivery")
    return web.json_response(delivery_json(row))


def _conflict(code: str, message: str) -> ApiError:
    return ApiError(409, code, message)


def _retry_refusal(facts: asyncpg.Record, now: datetime) -> ApiError | None:
    """Why this delivery may not be queued again, or None when it may.

    Only `failed` deliveries are retried, whatever their reason (a dead token the app has
    since replaced, a fixed sender id or APNs key, an FCM outage, a sender that was down
    past the ttl). A retry is ops re-running the send, not a new decision: caps, cooldown
    and quiet hours are not checked again, but what the customer asked for is — push
    consent and category opt-out — and what the marketer stopped stays stopped.
    """
    status = facts["status"]
    if status == DeliveryStatus.SENT:
        return _conflict("already_sent", "the delivery was sent; it is never sent twice")
    if status == DeliveryStatus.QUEUED:
        return _conflict("already_queued", "the delivery is queued; the sender will try it")
    if status == DeliveryStatus.CANCELLED:
        return _conflict("cancelled", f"a cancelled delivery ({facts['reason']}) is never sent")
    if not facts["device_exists"]:
        return _conflict("device_gone", "the device was erased")
    if not facts["token_active"]:
        return _conflict("no_active_token",
                         "the device has no active FCM token; the app must send a new one")
    if not facts["consent_push"]:
        return _conflict("no_push_consent", "the device has withdrawn push consent")
    category, consented = facts["offer_category"], facts["consent_categories"]
    if category and consented is not None and category not in consented:
        return _conflict("category_opt_out", "the device has opted out of this offer's category")
    if not facts["offer_exists"]:
        return _conflict("offer_deleted", "the offer was deleted")
    if facts["offer_status"] != "active":
        return _conflict("offer_paused", "the offer is paused")
    ends_at = facts["offer_ends_at"]
    ends = parse_rfc3339(ends_at) if ends_at else None
    if ends is not None and ends <= now:
        return _conflict("offer_ended", "the offer has ended")
    return None


@documented("Queue a failed delivery again", auth=BY_OPS, errors=(409,), response=DELIVERY)
async def retry_delivery(request: web.Request) -> web.Response:
    """Queue a failed delivery again, due now, with a fresh ttl window and no attempts.

    The window is the offer's current `ttl_s` from now: the old one has usually passed
    (that may be why it failed), and a retry that expired before the sender saw it would
    be no retry at all. 409 says why a delivery may not be retried (see `_retry_refusal`).
    """
    principal = caller(request)
    delivery_id = path_id(request, "delivery_id", "delivery")
    rt = request.app[RUNTIME]
    async with rt.pool.acquire() as conn, conn.transaction():
        facts = await conn.fetchrow(_RETRY_FACTS, delivery_id)
        if facts is None:
            raise not_found("delivery")
        refusal = _retry_refusal(facts, rt.now())
        if refusal is not None:
            raise refusal
        ttl_s = facts["offer_ttl_s"] or DEFAULT_TTL_S
        row = await conn.fetchrow(_REQUEUE, delivery_id, float(ttl_s), principal.key_id)
        # Wakes every sender's LISTEN at COMMIT, so the retry goes out at once.
        await conn.execute("SELECT pg_notify($1, '')", OUTBOX_CHANNEL)
    return web.json_response(delivery_json(row))


async def _mark(request: web.Request, sql: str) -> web.Response:
    device_id = await require_device(request)
    delivery_id = path_id(request, "delivery_id", "delivery")
    status = await request.app[RUNTIME].pool.fetchval(sql, delivery_id, device_id)
    if status is None:
        raise not_found("delivery")
    if status != DeliveryStatus.SENT:
        raise ApiError(409, "not_sent", f"this delivery was not sent (it is {status})")
    await reset_fatigue(request.app[RUNTIME].pool, delivery_id)  # SPEC 15: a response
    return web.Response(status=204)


@documented("The notification was opened (idempotent)", auth=BY_DEVICE, status=204, media=None,
            errors=(409,))
async def mark_opened(request: web.Request) -> web.Response:
    """The customer opened the notification; the first report's time is kept.

    Only for a delivery that was sent (409 `not_sent` otherwise): the app key ships in every
    app, so an app's word alone must not count opens for pushes that never went out.
    """
    return await _mark(request, _MARK_OPENED)


@documented("The offer was redeemed (idempotent)", auth=BY_DEVICE, status=204, media=None,
            errors=(409,))
async def mark_redeemed(request: web.Request) -> web.Response:
    """The customer redeemed the offer; the first report's time is kept.

    Does not imply `opened`: an offer can be shown at the till from the app's inbox.
    """
    return await _mark(request, _MARK_REDEEMED)


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1/deliveries", list_deliveries),
        web.get("/v1/deliveries/{delivery_id}", get_delivery),
        web.post("/v1/deliveries/{delivery_id}/retry", retry_delivery),
        web.post("/v1/deliveries/{delivery_id}/opened", mark_opened),
        web.post("/v1/deliveries/{delivery_id}/redeemed", mark_redeemed),
    ]
