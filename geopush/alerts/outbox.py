"""The store alerts outbox in PostgreSQL, shaped like the deliveries outbox (SPEC section 6).

`enqueue_alert` inserts in the caller's transaction, so an alert exists exactly when the
event that caused it was committed, and never makes ingest wait on a store's server. The
claim leases due rows and counts the attempt in one `FOR UPDATE SKIP LOCKED` statement on
the `store_alerts_due` index: any number of senders share the table, and a sender killed
mid-batch leaves leased rows that are claimed again once the lease passes — at most the
batches in flight go out twice, and each carries its `id` for the receiver to drop repeats.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from geopush.store.keyset import Listing
from geopush.timefmt import format_ts

# NOTIFY on this channel wakes the alert senders: an alert was queued.
ALERTS_CHANNEL = "geopush_alerts"

# Two statements, not an INSERT … SELECT from `stores`: on a Citus cluster `store_alerts` is
# a table of the coordinator that references a reference table, and Citus 14 fails such an
# INSERT … SELECT ("missing FROM-clause entry"). A store deleted in between makes the
# insert fail on its foreign key, as a deleted store's alert should.
_ALERTS_TO = "SELECT true FROM stores WHERE store_id = $1 AND alert_url IS NOT NULL"
_ENQUEUE = """
INSERT INTO store_alerts (alert_id, store_id, kind, body, device_id, customer_id)
VALUES ($1, $2, $3, $4::jsonb, $5, $6)
RETURNING alert_id
"""
# Times come as values and the stores' URLs in a second statement: on a Citus cluster
# `store_alerts` is a table of the coordinator referencing a reference table, and Citus
# refuses now() beside its columns in an UPDATE, and such a table joined in an UPDATE.
_CLAIM = """
WITH due AS (
    SELECT alert_id FROM store_alerts
    WHERE status = 'queued' AND next_attempt_at <= $3
      AND (lease_until IS NULL OR lease_until < $3)
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE store_alerts a
SET lease_until = $3::timestamptz + make_interval(secs => $2), attempts = a.attempts + 1
FROM due
WHERE a.alert_id = due.alert_id
RETURNING a.alert_id, a.store_id, a.body::text AS body, a.attempts
"""
_URLS = "SELECT store_id, alert_url FROM stores WHERE store_id = ANY($1::uuid[])"
_FINISH = """
UPDATE store_alerts a
SET status = u.status,
    reason = u.reason,
    sent_at = CASE WHEN u.status = 'sent' THEN $8::timestamptz ELSE a.sent_at END,
    finished_at = CASE WHEN u.status = 'queued' THEN NULL ELSE $8::timestamptz END,
    next_attempt_at = COALESCE(u.next_at, a.next_attempt_at),
    last_error = u.error,
    last_http_status = u.http_status,
    lease_until = NULL
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::int[],
            $7::int[])
     AS u(id, status, reason, next_at, error, http_status, attempts)
WHERE a.alert_id = u.id AND a.status = 'queued' AND a.attempts = u.attempts
"""


@dataclass(frozen=True)
class ClaimedAlert:
    alert_id: UUID
    store_id: UUID
    body: bytes
    attempts: int
    url: str | None


@dataclass(frozen=True)
class AlertOutcome:
    alert_id: UUID
    attempts: int
    status: str  # queued (retry), sent or failed
    reason: str | None = None
    next_at: datetime | None = None
    error: str | None = None
    http_status: int | None = None


async def enqueue_alert(conn: asyncpg.Connection, store_id: UUID, kind: str,
                        payload: dict[str, Any], *, device_id: UUID | None = None,
                        customer_id: str | None = None) -> UUID | None:
    """Queue `payload` for the store's `alert_url`, in the caller's transaction.

    The body sent is `{"id", "type": kind, "store_id", "created_at", **payload}`; `id` is
    the idempotency key. None when the store has no `alert_url` (nothing to alert).
    `device_id`/`customer_id` name whom it is about, for erasure.
    """
    alert_id = uuid.uuid4()
    body = {"id": str(alert_id), "type": kind, "store_id": str(store_id),
            "created_at": format_ts(datetime.now(UTC)), **payload}
    # The pool's jsonb codec encodes the dict (geopush.store.database).
    if not await conn.fetchval(_ALERTS_TO, store_id):
        return None
    await conn.execute(_ENQUEUE, alert_id, store_id, kind, body, device_id, customer_id)
    await conn.execute(f"NOTIFY {ALERTS_CHANNEL}")
    return alert_id


async def claim(conn: asyncpg.Connection, limit: int, lease_s: float) -> list[ClaimedAlert]:
    rows = await conn.fetch(_CLAIM, limit, lease_s, datetime.now(UTC))
    if not rows:
        return []
    urls = {r["store_id"]: r["alert_url"]
            for r in await conn.fetch(_URLS, list({r["store_id"] for r in rows}))}
    return [ClaimedAlert(r["alert_id"], r["store_id"], r["body"].encode(), r["attempts"],
                         urls.get(r["store_id"])) for r in rows]


async def finish(conn: asyncpg.Connection, outcomes: Sequence[AlertOutcome]) -> None:
    """Record every outcome of a batch in one statement; a row retried since is left alone."""
    if not outcomes:
        return
    await conn.execute(
        _FINISH,
        [o.alert_id for o in outcomes], [o.status for o in outcomes],
        [o.reason for o in outcomes], [o.next_at for o in outcomes],
        [o.error for o in outcomes], [o.http_status for o in outcomes],
        [o.attempts for o in outcomes], datetime.now(UTC),
    )


async def depth(conn: asyncpg.Connection) -> int:
    """Alerts queued and not yet finished (the gauge `geopush_alerts_outbox_depth`)."""
    return int(await conn.fetchval("SELECT count(*) FROM store_alerts WHERE status = 'queued'"))



# `GET /v1/alerts`: newest first, through the one keyset-pagination helper.
LISTING = Listing("store_alerts",
                  "alert_id, store_id, kind, status, reason, attempts, next_attempt_at,"
                  " last_error, last_http_status, created_at, sent_at, finished_at",
                  "alert_id", newest_first=True)
