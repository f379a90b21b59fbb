"""Deliveries as ops and the app see them: the record, the list, a manual retry and its
rules, and the app's opened/redeemed reports. (The sender's side of the outbox is
`delivery.outbox`.)
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg

from geopush.campaigns.offer_body import DEFAULT_TTL_S
from geopush.codes import DeliveryStatus
from geopush.delivery.outbox import OUTBOX_CHANNEL
from geopush.errors import Conflict, NotFound
from geopush.store.fatigue import reset as reset_fatigue
from geopush.store.keyset import Listing
from geopush.timefmt import parse_rfc3339

COLUMNS = (
    "delivery_id, offer_id, device_id, store_id, geofence_id, trigger, event_ts, status,"
    " reason, attempts, next_attempt_at, expires_at, created_at, sent_at, finished_at,"
    " fcm_message_name, opened_at, redeemed_at, last_error, retries, retried_at"
)
_GET = f"SELECT {COLUMNS} FROM deliveries WHERE delivery_id = $1"
LISTING = Listing("deliveries", COLUMNS, "delivery_id", newest_first=True)
# Id filters of GET /v1/deliveries, each a query parameter named as its column. Values are
# always bound as parameters; only these fixed names reach the SQL text.
UUID_FILTERS = ("offer_id", "device_id", "store_id", "geofence_id")
MAX_REASON_LEN = 100

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
RETURNING {COLUMNS}
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


async def delivery_row(pool: asyncpg.Pool, delivery_id: UUID) -> asyncpg.Record:
    """The delivery record; `NotFound` when there is none."""
    row = await pool.fetchrow(_GET, delivery_id)
    if row is None:
        raise NotFound("delivery")
    return row


def _conflict(code: str, message: str) -> Conflict:
    return Conflict(message, code=code)


def retry_refusal(facts: asyncpg.Record, now: datetime) -> Conflict | None:
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


async def requeue(pool: asyncpg.Pool, delivery_id: UUID, retried_by: str, now: datetime
                  ) -> asyncpg.Record:
    """Queue a failed delivery again, due now, with a fresh ttl window and no attempts.

    The window is the offer's current `ttl_s` from now: the old one has usually passed
    (that may be why it failed), and a retry that expired before the sender saw it would
    be no retry at all. `Conflict` says why a delivery may not be retried
    (`retry_refusal`); `NotFound` when there is none.
    """
    async with pool.acquire() as conn, conn.transaction():
        facts = await conn.fetchrow(_RETRY_FACTS, delivery_id)
        if facts is None:
            raise NotFound("delivery")
        refusal = retry_refusal(facts, now)
        if refusal is not None:
            raise refusal
        ttl_s = facts["offer_ttl_s"] or DEFAULT_TTL_S
        row: asyncpg.Record = await conn.fetchrow(_REQUEUE, delivery_id, float(ttl_s),
                                                  retried_by)
        # Wakes every sender's LISTEN at COMMIT, so the retry goes out at once.
        await conn.execute("SELECT pg_notify($1, '')", OUTBOX_CHANNEL)
    return row


async def report(pool: asyncpg.Pool, delivery_id: UUID, device_id: UUID, what: str) -> None:
    """The app's report that the push was `opened` or `redeemed`; the first time is kept.
    `NotFound` for a delivery this device does not have; `Conflict` (`not_sent`) for one
    that never went out."""
    sql = {"opened": _MARK_OPENED, "redeemed": _MARK_REDEEMED}[what]
    status = await pool.fetchval(sql, delivery_id, device_id)
    if status is None:
        raise NotFound("delivery")
    if status != DeliveryStatus.SENT:
        raise Conflict(f"this delivery was not sent (it is {status})", code="not_sent")
    await reset_fatigue(pool, delivery_id)  # SPEC 15: a response resets the category
