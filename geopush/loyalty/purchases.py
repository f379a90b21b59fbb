"""Purchase points at transactions import, and the purchase challenges they complete.

Points are credited inside the import's transaction (one statement for the whole file), for
exactly the rows it inserted: those stamped with its start time (`imported_at` equal to
the now() it reads and passes on, an index lookup). One transaction (its lines are a
basket) earns `floor(amount x [loyalty] points_per_unit)` once, its `ref` the
transaction id; a refund (a negative amount) earns nothing and takes nothing back: a
marketer adjusts by hand if need be.

Purchase challenges are settled after the import commits, in short transactions of their
own, so a large import never holds a customer's phone row while it runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from geopush.config import Config
from geopush.loyalty.checkins import LoyaltyTally
from geopush.loyalty.rewards import Completion, decide_rewards
from geopush.outcomes import DecideOffers

_CREDIT_PURCHASES = """
WITH bought AS (
    SELECT transaction_id, customer_id, (array_agg(store_id))[1] AS store_id,
           min(ts) AS ts, sum(amount) AS amount
    FROM transactions WHERE imported_at = $2 AND customer_id <> ''
    GROUP BY transaction_id, customer_id
), credited AS (
    INSERT INTO loyalty_ledger (ts, points, reason, ref, subject, customer_id, store_id)
    SELECT ts, least(floor(amount * $1::float8), 1e9)::int, 'purchase', transaction_id,
           'c:' || customer_id, customer_id, store_id
    FROM bought WHERE floor(amount * $1::float8) >= 1
    ORDER BY customer_id, transaction_id
    ON CONFLICT DO NOTHING
    RETURNING subject, points
)
SELECT count(*) AS purchases, coalesce(sum(points), 0)::bigint AS points,
       coalesce(array_agg(DISTINCT subject), '{}') AS subjects
FROM credited
"""
_COMPLETE = """
WITH live AS (
    SELECT * FROM challenges
    WHERE deleted_at IS NULL AND kind = 'purchases' AND starts_at <= $2
), progress AS (
    SELECT c.challenge_id, c.reward_points, c.offer_id, l.subject,
           min(l.customer_id) AS customer_id
    FROM live c
    JOIN loyalty_ledger l ON l.subject = ANY($1::text[]) AND l.reason = 'purchase'
         AND l.ts >= c.starts_at AND l.ts < c.ends_at
         AND (c.store_ids = '{}' OR l.store_id = ANY(c.store_ids))
    WHERE NOT EXISTS (SELECT 1 FROM challenge_completions x
                      WHERE x.challenge_id = c.challenge_id AND x.subject = l.subject)
    GROUP BY c.challenge_id, c.reward_points, c.offer_id, c.target, l.subject
    HAVING count(*) >= c.target
), completed AS (
    INSERT INTO challenge_completions (challenge_id, subject, customer_id, completed_at)
    SELECT challenge_id, subject, customer_id, $2 FROM progress
    ORDER BY subject, challenge_id
    ON CONFLICT DO NOTHING
    RETURNING challenge_id, subject
), rewards AS (
    INSERT INTO loyalty_ledger (ts, points, reason, ref, subject, customer_id)
    SELECT $2, p.reward_points, 'challenge', p.challenge_id::text, p.subject, p.customer_id
    FROM completed c JOIN progress p USING (challenge_id, subject)
    WHERE p.reward_points > 0
    ON CONFLICT DO NOTHING
    RETURNING points
)
SELECT (SELECT coalesce(sum(points), 0) FROM rewards)::bigint AS points,
       (SELECT coalesce(json_agg(json_build_object(
            'challenge_id', p.challenge_id, 'offer_id', p.offer_id,
            'customer_id', p.customer_id)), '[]')
        FROM completed c JOIN progress p USING (challenge_id, subject)) AS completed
"""
# The phone a reward goes to: the customer's most recently active one.
_LOCK_PHONE = """
SELECT device_id, customer_id, consent_location, consent_push, consent_categories,
       fcm_token, fcm_token_active, locale, timezone
FROM devices WHERE customer_id = $1
ORDER BY last_ping_ts DESC NULLS LAST, updated_at DESC LIMIT 1
FOR UPDATE
"""


async def credit_purchases(conn: asyncpg.Connection, config: Config) -> dict[str, Any]:
    """Credit the transactions this (still open) import transaction inserted."""
    if not config.loyalty.enabled or config.loyalty.points_per_unit <= 0:
        return {"purchases": 0, "points": 0, "subjects": []}
    # This transaction's now() read here and passed on: on a Citus cluster a now() in the
    # statement would be each worker's own transaction's, not the import's.
    started = await conn.fetchval("SELECT now()")
    row = await conn.fetchrow(_CREDIT_PURCHASES, config.loyalty.points_per_unit, started)
    return {"purchases": row["purchases"], "points": int(row["points"]),
            "subjects": list(row["subjects"])}


async def settle_purchase_challenges(pool: asyncpg.Pool, config: Config,
                                     subjects: list[str], now: datetime,
                                     decide: DecideOffers) -> LoyaltyTally:
    """Complete the purchase challenges these customers reached; decide their rewards (with
    `decide`, the ingest path's `decide_offers`)."""
    tally = LoyaltyTally()
    if not subjects or not config.loyalty.enabled:
        return tally
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(_COMPLETE, subjects, now)
    tally.points["challenge"] += int(row["points"])
    tally.challenges += len(row["completed"])
    for item in row["completed"]:
        if item["offer_id"] is None:
            continue
        completion = Completion(challenge_id=item["challenge_id"], offer_id=item["offer_id"],
                                at=now, geofence_id=None, event_id=None)
        async with pool.acquire() as conn, conn.transaction():
            phone = await conn.fetchrow(_LOCK_PHONE, item["customer_id"])
            if phone is None:
                continue  # no phone to reward: the points are credited all the same
            summary = await decide_rewards(conn, config, phone, [completion], {}, now, decide)
        tally.decisions.outcomes.update(summary.outcomes)
    return tally
