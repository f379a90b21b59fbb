"""Consent (SPEC section 10): every change is logged, and a withdrawal takes effect at once.

Location withdrawn: the device's open visits are closed without events (so neither a ping
nor the dwell sweeper can fire anything from them) and its queued `enter`/`dwell`
deliveries are cancelled. Push withdrawn: every queued delivery of the device is cancelled.

The caller holds a transaction in which the device row is already locked (the consent
UPDATE takes the lock), the same lock ingest and the sweeper take: a batch or a sweep of this
device runs wholly before or wholly after the withdrawal, never across it.

A delivery a sender holds the lease on is left to that sender, which checks consent again
right before it sends (`geopush.delivery.outbox.recheck`) and records it as cancelled then.
Cancelling it here instead could not stop a message already on its way to FCM, and would
leave a `cancelled` row for a push that was in fact sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg

from geopush import metrics
from geopush.codes import DeliveryReason, DeliveryStatus

# Triggers whose offers exist only because of where the phone was.
LOCATION_TRIGGERS = ("enter", "dwell")

_LOG = """
INSERT INTO consent_log (device_id, location, push, categories) VALUES ($1, $2, $3, $4)
"""
_CLOSE_VISITS = "DELETE FROM visits WHERE device_id = $1"
_CANCEL = """
UPDATE deliveries SET status = 'cancelled', reason = 'consent_withdrawn', finished_at = now(),
       lease_until = NULL
WHERE device_id = $1 AND status = 'queued' AND ($2 OR trigger = ANY($3::text[]))
  AND (lease_until IS NULL OR lease_until < now())
RETURNING delivery_id
"""


@dataclass(frozen=True)
class Withdrawal:
    """What a consent change undid, for the metrics once committed."""

    visits_closed: int = 0
    cancelled: int = 0

    def observe(self) -> None:
        if self.cancelled:
            metrics.DELIVERIES.labels(
                DeliveryStatus.CANCELLED, DeliveryReason.CONSENT_WITHDRAWN
            ).inc(self.cancelled)


async def record_consent(
    conn: asyncpg.Connection,
    device_id: UUID,
    *,
    location: bool,
    push: bool,
    categories: list[str] | None,
) -> Withdrawal:
    """Log the change and apply what a withdrawal means; the device row is locked."""
    await conn.execute(_LOG, device_id, location, push, categories)
    if location and push:
        return Withdrawal()
    closed = 0
    if not location:
        status = await conn.execute(_CLOSE_VISITS, device_id)
        closed = int(status.split()[-1])
    cancelled = await conn.fetch(_CANCEL, device_id, not push, list(LOCATION_TRIGGERS))
    return Withdrawal(closed, len(cancelled))


# Consent for the customer's name to show (leaderboards) belongs to the customer (SPEC
# section 10): a device linked to another customer takes that customer's own choice, never
# the one given for whoever it was linked to before.
_FOLLOW_CUSTOMER = """
WITH theirs AS (
    SELECT coalesce(bool_or(consent_leaderboard), false) AS leaderboard FROM devices
    WHERE $2::text IS NOT NULL AND customer_id = $2 AND device_id <> $1
), changed AS (
    UPDATE devices d SET consent_leaderboard = theirs.leaderboard FROM theirs
    WHERE d.device_id = $1 AND d.consent_leaderboard IS DISTINCT FROM theirs.leaderboard
    RETURNING d.device_id, d.consent_location, d.consent_push, d.consent_categories,
              d.consent_leaderboard
)
INSERT INTO consent_log (device_id, location, push, categories, leaderboard)
SELECT device_id, consent_location, consent_push, consent_categories, consent_leaderboard
FROM changed
"""


async def follow_customer_consent(conn: asyncpg.Connection, device_id: UUID,
                                  customer_id: str | None) -> None:
    """After a device's customer link changed: its leaderboard consent is its customer's."""
    await conn.execute(_FOLLOW_CUSTOMER, device_id, customer_id)
