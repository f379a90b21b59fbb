"""Signing in keeps what was earned (SPEC section 11).

A phone earns under its own subject (`d:<device_id>`) until it is linked to a customer. At
the link, its check-ins, badge and challenge points, badges and challenge completions move to
the customer (`c:<customer_id>`): the rows themselves change subject, so every rule that
reads them (once per store-day, 24 hours, streaks, badges, challenge progress, leaderboards)
sees the customer's whole history at once. What the customer already has stays theirs: a
store-day already credited, a badge already won, a challenge already completed is not
credited twice, and the device's duplicate stays with the device. One `merge` row in the
customer's ledger says what moved (0 points: the points are in the moved rows).

The caller holds the device's row lock; the customer's lock is taken here, as check-ins and
decisions take it, so a check-in of another of the customer's phones cannot interleave.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from geopush.loyalty.rules import customer_subject, subject_of
from geopush.outcomes import lock_customer

# $1 device subject, $2 customer subject, $3 customer id.
_MOVE_LEDGER = """
WITH moved AS (
    UPDATE loyalty_ledger l SET subject = $2, customer_id = $3
    WHERE l.subject = $1 AND l.reason IN ('checkin', 'badge', 'challenge')
      AND NOT (l.reason = 'checkin' AND EXISTS (
          SELECT 1 FROM loyalty_ledger c WHERE c.subject = $2 AND c.reason = 'checkin'
            AND c.local_day = l.local_day AND c.store_id = l.store_id))
      AND NOT (l.reason <> 'checkin' AND EXISTS (
          SELECT 1 FROM loyalty_ledger c WHERE c.subject = $2 AND c.reason = l.reason
            AND c.ref = l.ref))
    RETURNING l.points
)
SELECT count(*) AS entries, coalesce(sum(points), 0)::bigint AS points FROM moved
"""
_MOVE_BADGES = """
WITH moved AS (
    UPDATE loyalty_badges b SET subject = $2, customer_id = $3
    WHERE b.subject = $1
      AND NOT EXISTS (SELECT 1 FROM loyalty_badges c WHERE c.subject = $2 AND c.code = b.code)
    RETURNING 1
)
SELECT count(*) FROM moved
"""
_MOVE_COMPLETIONS = """
WITH moved AS (
    UPDATE challenge_completions x SET subject = $2, customer_id = $3
    WHERE x.subject = $1
      AND NOT EXISTS (SELECT 1 FROM challenge_completions c
                      WHERE c.subject = $2 AND c.challenge_id = x.challenge_id)
    RETURNING 1
)
SELECT count(*) FROM moved
"""
_RECORD = """
INSERT INTO loyalty_ledger (ts, points, reason, ref, subject, customer_id, device_id, note)
VALUES ($1, 0, 'merge', NULL, $2, $3, $4, $5)
"""


@dataclass(frozen=True)
class Merge:
    """What moved from the device to its customer."""

    entries: int = 0
    points: int = 0
    badges: int = 0
    challenges: int = 0

    @property
    def empty(self) -> bool:
        return not (self.entries or self.badges or self.challenges)


async def merge_device_into_customer(conn: asyncpg.Connection, device_id: UUID,
                                     customer_id: str, now: datetime) -> Merge:
    """Move a newly linked device's anonymous loyalty to its customer (inside the link's
    transaction, the device row locked)."""
    await lock_customer(conn, customer_id)
    mine, theirs = subject_of(None, device_id), customer_subject(customer_id)
    ledger = await conn.fetchrow(_MOVE_LEDGER, mine, theirs, customer_id)
    merge = Merge(entries=ledger["entries"], points=ledger["points"],
                  badges=await conn.fetchval(_MOVE_BADGES, mine, theirs, customer_id),
                  challenges=await conn.fetchval(_MOVE_COMPLETIONS, mine, theirs, customer_id))
    if not merge.empty:
        note = (f"from a device: {merge.points} points in {merge.entries} entries,"
                f" {merge.badges} badges, {merge.challenges} completed challenges")
        await conn.execute(_RECORD, now, theirs, customer_id, device_id, note)
    return merge
