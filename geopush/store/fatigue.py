"""Fatigue state (SPEC section 15): unopened notifications per subject and category.

Updated where deliveries change, in the same transaction: `count_sent` after the sender
records a batch as sent, `reset` when the customer opens or redeems one. Each is a read of
the deliveries concerned (by primary key) and a write of the few state rows, in two
statements, so the same code runs on one PostgreSQL and on Citus (where the deliveries are
distributed and this table is a reference table).
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import asyncpg

_SUBJECT = ("CASE WHEN d.customer_id IS NOT NULL THEN 'c:' || d.customer_id"
            " ELSE 'd:' || d.device_id::text END")
_SENT = f"""
SELECT {_SUBJECT} AS subject, o.definition ->> 'category' AS category,
       count(*)::int AS n, max(d.sent_at) AS at
FROM deliveries d JOIN offers o ON o.offer_id = d.offer_id
WHERE d.delivery_id = ANY($1::uuid[]) AND d.status = 'sent'
  AND d.opened_at IS NULL AND d.redeemed_at IS NULL
  AND o.definition ->> 'category' IS NOT NULL
GROUP BY 1, 2
"""
_ADD = """
INSERT INTO category_fatigue AS f (subject, category, unopened, last_sent_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamptz[])
ON CONFLICT (subject, category) DO UPDATE
    SET unopened = f.unopened + EXCLUDED.unopened,
        last_sent_at = greatest(f.last_sent_at, EXCLUDED.last_sent_at)
"""
_OF_DELIVERY = f"""
SELECT {_SUBJECT} AS subject, o.definition ->> 'category' AS category
FROM deliveries d JOIN offers o ON o.offer_id = d.offer_id
WHERE d.delivery_id = $1 AND d.status = 'sent'
"""
_RESET = """
UPDATE category_fatigue SET unopened = 0
WHERE subject = $1 AND category = $2 AND unopened <> 0
"""


async def count_sent(conn: asyncpg.Connection, delivery_ids: Sequence[UUID]) -> None:
    """Count these just-sent deliveries as unopened, per subject and category."""
    if not delivery_ids:
        return
    rows = await conn.fetch(_SENT, list(delivery_ids))
    if rows:
        await conn.execute(_ADD, [r["subject"] for r in rows], [r["category"] for r in rows],
                           [r["n"] for r in rows], [r["at"] for r in rows])


async def reset(conn: asyncpg.Connection | asyncpg.Pool, delivery_id: UUID) -> None:
    """An open or a redemption: the category of this delivery is wanted again."""
    row = await conn.fetchrow(_OF_DELIVERY, delivery_id)
    if row is not None and row["category"] is not None:
        await conn.execute(_RESET, row["subject"], row["category"])
