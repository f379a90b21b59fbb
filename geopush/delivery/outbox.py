"""The outbox in PostgreSQL: claim due deliveries with a lease, record what became of them.

A claim picks due rows and, in the same statement, sets `lease_until` and counts the
attempt only where the row is still claimable, checked again once its row lock is held:
two senders that pick the same row wait for each other and the second finds it leased, so
any number of senders share the outbox without ever claiming the same row twice. (Not
`FOR UPDATE SKIP LOCKED`: on a Citus cluster that needs an equality filter on the
distribution column, and the claim spans every shard; rows are named by their whole key,
device_id first, so each update is routed to its shard.) A sender that dies mid-batch
leaves leased rows behind; they are claimed again once the lease has passed, which is the
only way a message can go out twice — at most the batches that were in flight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from geopush.codes import DeliveryStatus
from geopush.store.fatigue import count_sent

# NOTIFY on this channel wakes the senders: a delivery was queued or made due now.
OUTBOX_CHANNEL = "geopush_outbox"

_EXPIRE = """
UPDATE deliveries d SET status = 'failed', reason = 'expired', finished_at = now(),
       lease_until = NULL
FROM (SELECT device_id, delivery_id FROM deliveries
      WHERE status = 'queued' AND expires_at <= now()
        AND (lease_until IS NULL OR lease_until < now())
      LIMIT $1) AS due
WHERE d.device_id = due.device_id AND d.delivery_id = due.delivery_id
  AND d.status = 'queued' AND (d.lease_until IS NULL OR d.lease_until < now())
RETURNING d.delivery_id
"""
_CLAIM = """
WITH due AS (
    SELECT device_id, delivery_id FROM deliveries
    WHERE status = 'queued' AND next_attempt_at <= now() AND expires_at > now()
      AND (lease_until IS NULL OR lease_until < now())
    ORDER BY next_attempt_at
    LIMIT $1
)
UPDATE deliveries d
SET lease_until = now() + make_interval(secs => $2), attempts = d.attempts + 1
FROM due
WHERE d.device_id = due.device_id AND d.delivery_id = due.delivery_id
  AND d.status = 'queued' AND d.expires_at > now()
  AND (d.lease_until IS NULL OR d.lease_until < now())
RETURNING d.delivery_id, d.device_id, d.offer_id, d.store_id, d.geofence_id, d.title,
          d.body, d.deeplink, d.expires_at, d.event_ts, d.attempts
"""
# The pause is capped when written and when read ([fcm] max_retry_after_s, $1): a row
# written before the cap existed, or under a larger one, is cut down to it here (the UPDATE
# runs only then), so a Retry-After of a billion seconds cannot stop sending for good.
_PAUSE_LEFT = """
WITH clamp AS (
    UPDATE sender_pause SET until = clock_timestamp() + make_interval(secs => $1::float8)
    WHERE until > clock_timestamp() + make_interval(secs => $1::float8)
)
SELECT least(extract(epoch FROM until - clock_timestamp())::float8, $1::float8)
FROM sender_pause
WHERE until > clock_timestamp()
"""
_PAUSE = """
INSERT INTO sender_pause (id, until)
VALUES (true, clock_timestamp() + make_interval(secs => least($1::float8, $2::float8)))
ON CONFLICT (id) DO UPDATE SET until = least(greatest(sender_pause.until, EXCLUDED.until),
                                             clock_timestamp() + make_interval(secs => $2::float8))
"""
_TOKENS = """
SELECT device_id, fcm_token, fcm_token_active FROM devices WHERE device_id = ANY($1::uuid[])
"""
_FINISH = """
UPDATE deliveries d
SET status = u.status,
    reason = u.reason,
    fcm_message_name = COALESCE(u.name, d.fcm_message_name),
    sent_at = CASE WHEN u.status = 'sent' THEN $8::timestamptz ELSE d.sent_at END,
    finished_at = CASE WHEN u.status = 'queued' THEN NULL ELSE $8::timestamptz END,
    next_attempt_at = COALESCE(u.next_at, d.next_attempt_at),
    last_error = u.error,
    lease_until = NULL
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[],
            $7::int[])
     AS u(id, status, reason, name, next_at, error, attempts)
WHERE d.delivery_id = u.id AND d.status = 'queued' AND d.attempts = u.attempts
"""
# An enter or dwell delivery whose visit has ended (no open visit that began at or before
# its event) must not go out late: cancelled here too, for the ones the exit could not
# cancel because a sender held them at that moment and then had to retry.
_CANCEL_LEFT = """
UPDATE deliveries d SET status = 'cancelled', reason = 'left_geofence', finished_at = now(),
       lease_until = NULL
FROM (SELECT q.device_id, q.delivery_id FROM deliveries q
      WHERE q.status = 'queued' AND q.next_attempt_at <= now() AND q.geofence_id IS NOT NULL
        AND q.trigger IN ('enter', 'dwell')
        AND (q.lease_until IS NULL OR q.lease_until < now())
        AND NOT EXISTS (SELECT 1 FROM visits v WHERE v.device_id = q.device_id
                        AND v.geofence_id = q.geofence_id AND v.entered_at <= q.event_ts)
      LIMIT $1) AS gone
WHERE d.device_id = gone.device_id AND d.delivery_id = gone.delivery_id
  AND d.status = 'queued' AND (d.lease_until IS NULL OR d.lease_until < now())
RETURNING d.delivery_id
"""
# Right before sending: which claimed rows are still this sender's (queued, under the
# attempt count of its claim: not erased, not retried by ops), and of those, which belong to
# a device that has since withdrawn the consent they need (SPEC section 10).
_RECHECK = """
SELECT q.delivery_id,
       coalesce(NOT d.consent_push OR (NOT d.consent_location AND q.trigger = ANY($4::text[])),
                false) AS withdrawn
FROM unnest($1::uuid[], $2::uuid[], $3::int[]) AS u(device_id, id, attempts)
JOIN deliveries q ON q.device_id = u.device_id AND q.delivery_id = u.id
                 AND q.attempts = u.attempts AND q.status = 'queued'
LEFT JOIN devices d ON d.device_id = q.device_id
"""
_DEACTIVATE = """
UPDATE devices d SET fcm_token_active = false, updated_at = now()
FROM unnest($1::uuid[], $2::text[]) AS u(device_id, token)
WHERE d.device_id = u.device_id AND d.fcm_token = u.token
"""


@dataclass(frozen=True)
class Claimed:
    """A delivery this sender holds the lease on, with the device's current token."""

    delivery_id: UUID
    device_id: UUID | None
    offer_id: UUID
    store_id: UUID | None
    geofence_id: UUID | None
    title: str | None
    body: str | None
    deeplink: str | None
    expires_at: datetime
    event_ts: datetime
    attempts: int
    token: str | None


@dataclass(frozen=True)
class Finish:
    """What became of one claimed delivery; status `queued` means try again at `next_at`.

    `attempts` is the count the claim set: it is the lease's token, so an outcome is written
    only by the sender that holds the row (never over an erasure or a later claim).
    """

    delivery_id: UUID
    attempts: int
    status: str
    reason: str | None = None
    message_name: str | None = None
    next_at: datetime | None = None
    error: str | None = None


async def expire(conn: asyncpg.Connection, limit: int) -> int:
    """Fail deliveries whose ttl passed before they could be sent; never send them."""
    return len(await conn.fetch(_EXPIRE, limit))


async def cancel_left(conn: asyncpg.Connection, limit: int) -> int:
    """Cancel due enter/dwell deliveries whose visit has ended (`left_geofence`)."""
    return len(await conn.fetch(_CANCEL_LEFT, limit))


async def pause_left(conn: asyncpg.Connection, cap_s: float) -> float:
    """Seconds left of the pause a sender recorded for QUOTA_EXCEEDED (0: none), at most
    `cap_s`; a longer pause in the row is cut down to `cap_s` from now."""
    return float(await conn.fetchval(_PAUSE_LEFT, cap_s) or 0.0)


async def pause(conn: asyncpg.Connection, seconds: float, cap_s: float) -> None:
    """Make every sender wait `seconds` (at most `cap_s`) from now; a longer pause already
    recorded stays, up to `cap_s` from now."""
    await conn.execute(_PAUSE, seconds, cap_s)


@dataclass(frozen=True)
class Recheck:
    """A claimed batch split right before sending."""

    sendable: list[Claimed]
    withdrawn: list[Claimed]  # the device withdrew consent: cancel, never send


async def recheck(conn: asyncpg.Connection, claimed: Sequence[Claimed],
                  location_triggers: Sequence[str]) -> Recheck:
    """Drop rows no longer this sender's; set apart those whose device withdrew consent.

    One query per batch. Consent can still be withdrawn in the milliseconds between this
    check and FCM accepting the message; such a push is recorded as `sent`, truthfully.
    """
    rows = await conn.fetch(
        _RECHECK, [c.device_id for c in claimed], [c.delivery_id for c in claimed],
        [c.attempts for c in claimed], list(location_triggers),
    )
    withdrawn_ids = {r["delivery_id"] for r in rows if r["withdrawn"]}
    ours = {r["delivery_id"] for r in rows}
    return Recheck(
        [c for c in claimed if c.delivery_id in ours and c.delivery_id not in withdrawn_ids],
        [c for c in claimed if c.delivery_id in withdrawn_ids],
    )


async def claim(conn: asyncpg.Connection, limit: int, lease_s: float) -> list[Claimed]:
    rows = await conn.fetch(_CLAIM, limit, lease_s)
    if not rows:
        return []
    devices = [r["device_id"] for r in rows if r["device_id"] is not None]
    tokens: dict[Any, str | None] = {
        t["device_id"]: (t["fcm_token"] if t["fcm_token_active"] else None)
        for t in await conn.fetch(_TOKENS, devices)
    }
    return [
        Claimed(
            r["delivery_id"], r["device_id"], r["offer_id"], r["store_id"], r["geofence_id"],
            r["title"], r["body"], r["deeplink"], r["expires_at"], r["event_ts"], r["attempts"],
            tokens.get(r["device_id"]),
        )
        for r in rows
    ]


async def finish(
    conn: asyncpg.Connection,
    results: Sequence[Finish],
    deactivate: Sequence[tuple[UUID, str]] = (),
) -> None:
    """Record a batch's outcomes (one statement) and turn off the tokens FCM refused."""
    if results:
        await conn.execute(
            _FINISH,
            [r.delivery_id for r in results], [r.status for r in results],
            [r.reason for r in results], [r.message_name for r in results],
            [r.next_at for r in results], [r.error for r in results],
            [r.attempts for r in results],
            # The time as a value (no round trip for it): Citus refuses now() inside CASE
            # in an update it spreads over shards.
            datetime.now(UTC),
        )
        await count_sent(conn, [r.delivery_id for r in results
                                if r.status == DeliveryStatus.SENT])
    if deactivate:
        await conn.execute(_DEACTIVATE, [d for d, _ in deactivate], [t for _, t in deactivate])


async def outbox_depth(pool: asyncpg.Pool) -> int:
    """Deliveries queued and not yet finished (the `geopush_outbox_depth` gauge)."""
    depth: int = await pool.fetchval("SELECT count(*) FROM deliveries WHERE status = 'queued'")
    return depth
