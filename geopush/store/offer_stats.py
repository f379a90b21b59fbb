"""`GET /v1/offers/{offer_id}/stats`: what an offer did, and what it earned (SPEC section 7).

Definitions (every figure comes from the decisions and deliveries tables, so it survives
erasure as a count):

- `triggered`: visit events for which the offer was a candidate (distinct events among the
  offer's decisions; a decision without an event counts once).
- `suppressed`: candidate decisions not sent, by reason (SPEC section 4).
- `control`: decisions held out as the control group.
- `queued`: deliveries created (whatever became of them since); `sent`: deliveries FCM
  accepted; `failed`: failed deliveries by reason; `cancelled`: deliveries cancelled
  before sending, by reason (e.g. `left_geofence`); `opened`, `redeemed`: deliveries the
  app reported opened, redeemed.
- `conversion`: the response measured against the control group, per CRM customer (a
  device without a customer has no transactions to look at).
  - A customer is in `treatment` or `control` by their first contact with the offer
    (first queued or control decision). The hold-out hash is stable, so this only matters
    when `control_pct` changed mid-campaign.
  - The offer's stores are its `store_ids` plus the stores of its `geofence_ids`.
  - A customer converted when they have a transaction at one of those stores within
    `[decision time, decision time + [campaigns] conversion_window_days]` of any of their
    contacts of their group. Transactions at no store or an unknown store never convert.
  - `rate` = converted / customers; `lift` = treatment rate / control rate − 1, null when
    there is no control customer, no treatment customer, or the control rate is 0.

Stats stay readable after the offer is deleted: results outlive campaigns.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import Any
from uuid import UUID

import asyncpg

from geopush.store.levers import offer_levers

_OFFER_STORES = """
SELECT ARRAY(
    SELECT unnest(o.store_ids)
    UNION
    SELECT g.store_id FROM geofences g
    WHERE g.geofence_id = ANY(o.geofence_ids) AND g.store_id IS NOT NULL
) AS store_ids
FROM offers o WHERE o.offer_id = $1
"""
# The pruned counts are joined, not a subquery in the select list: Citus cannot push one
# down beside aggregates.
_DECISIONS = """
SELECT live.triggered + pruned.events AS triggered, live.control
FROM (SELECT count(DISTINCT event_id) + count(*) FILTER (WHERE event_id IS NULL) AS triggered,
             count(*) FILTER (WHERE outcome = 'control') AS control
      FROM decisions WHERE offer_id = $1) AS live,
     (SELECT coalesce(sum(events), 0)::bigint AS events FROM decisions_pruned
      WHERE offer_id = $1) AS pruned
"""
# Live suppressed decisions, plus those retention folded into per-day counts.
_SUPPRESSED = """
SELECT reason, sum(n)::bigint AS n FROM (
    SELECT reason, count(*) AS n FROM decisions
    WHERE offer_id = $1 AND outcome = 'suppressed' GROUP BY reason
    UNION ALL
    SELECT reason, sum(decisions)::bigint FROM decisions_pruned WHERE offer_id = $1
    GROUP BY reason
) both_ GROUP BY reason
"""
_DELIVERIES = """
SELECT count(*) AS queued,
       count(*) FILTER (WHERE status = 'sent') AS sent,
       count(*) FILTER (WHERE opened_at IS NOT NULL) AS opened,
       count(*) FILTER (WHERE redeemed_at IS NOT NULL) AS redeemed
FROM deliveries WHERE offer_id = $1
"""
_ENDED = """
SELECT status, coalesce(reason, 'unknown') AS reason, count(*) AS n FROM deliveries
WHERE offer_id = $1 AND status IN ('failed', 'cancelled') GROUP BY status, reason
"""
_CONVERSION = """
WITH contacts AS (
    SELECT customer_id, outcome, decided_at FROM decisions
    WHERE offer_id = $1 AND outcome IN ('queued', 'control') AND customer_id IS NOT NULL
), grouped AS (
    SELECT DISTINCT ON (customer_id) customer_id, outcome AS grp
    FROM contacts ORDER BY customer_id, decided_at
), converted AS (
    -- Joins, not a correlated EXISTS: on a Citus cluster the contacts (from decisions, by
    -- device) meet the transactions (by customer) only as a join on customer_id.
    SELECT DISTINCT g.customer_id
    FROM grouped g
    JOIN contacts c ON c.customer_id = g.customer_id AND c.outcome = g.grp
    JOIN transactions t ON t.customer_id = c.customer_id
    WHERE t.store_id = ANY($2::uuid[])
      AND t.ts >= c.decided_at AND t.ts <= c.decided_at + make_interval(days => $3)
)
SELECT g.grp, count(*) AS customers, count(v.customer_id) AS converted
FROM grouped g LEFT JOIN converted v USING (customer_id) GROUP BY g.grp
"""


def lift(treatment: dict[str, int], control: dict[str, int]) -> float | None:
    """Treatment rate / control rate − 1, computed on integers so equal rates give 0.0."""
    if not treatment["customers"] or not control["customers"] or not control["converted"]:
        return None
    ratio = Fraction(treatment["converted"] * control["customers"],
                     treatment["customers"] * control["converted"])
    return float(ratio - 1)


def _group(counts: dict[str, Any], outcome: str) -> dict[str, Any]:
    customers, converted = counts.get(outcome, (0, 0))
    return {"customers": customers, "converted": converted,
            "rate": converted / customers if customers else None}


async def offer_stats(conn: asyncpg.Connection | asyncpg.Pool, offer_id: UUID,
                      window_days: int) -> dict[str, Any] | None:
    """The stats of one offer, or None when no offer has this id."""
    stores_row = await conn.fetchrow(_OFFER_STORES, offer_id)
    if stores_row is None:
        return None
    decisions = await conn.fetchrow(_DECISIONS, offer_id)
    deliveries = await conn.fetchrow(_DELIVERIES, offer_id)
    ended: dict[str, dict[str, int]] = {"failed": {}, "cancelled": {}}
    for r in await conn.fetch(_ENDED, offer_id):
        ended[r["status"]][r["reason"]] = r["n"]
    groups = {r["grp"]: (r["customers"], r["converted"])
              for r in await conn.fetch(_CONVERSION, offer_id, stores_row["store_ids"],
                                        window_days)}
    treatment, control = _group(groups, "queued"), _group(groups, "control")
    return {
        "offer_id": str(offer_id),
        "triggered": decisions["triggered"],
        "suppressed": {r["reason"]: r["n"] for r in await conn.fetch(_SUPPRESSED, offer_id)},
        "control": decisions["control"],
        "queued": deliveries["queued"],
        "sent": deliveries["sent"],
        "failed": ended["failed"],
        "cancelled": ended["cancelled"],
        "opened": deliveries["opened"],
        "redeemed": deliveries["redeemed"],
        "conversion": {
            "window_days": window_days,
            "treatment": treatment,
            "control": control,
            "lift": lift(treatment, control),
        },
        "levers": await offer_levers(conn, offer_id, window_days),
    }


async def read_offer_stats(pool: asyncpg.Pool, offer_id: UUID, window_days: int
                           ) -> dict[str, Any] | None:
    """`offer_stats` in one read-only snapshot, so the figures add up even while decisions
    are being written; None when no offer has this id."""
    async with pool.acquire() as conn, conn.transaction(readonly=True,
                                                        isolation="repeatable_read"):
        return await offer_stats(conn, offer_id, window_days)


# --- day by day (`GET /v1/offers/{offer_id}/stats/daily`) -----------------------------------

# Each branch counts one figure per UTC day; the union is one round trip.
_DAILY = """
SELECT d, k, n FROM (
    SELECT (decided_at AT TIME ZONE 'UTC')::date AS d, 'triggered' AS k,
           count(DISTINCT event_id) + count(*) FILTER (WHERE event_id IS NULL) AS n
    FROM decisions WHERE offer_id = $1 AND decided_at >= $2 GROUP BY 1
    UNION ALL
    SELECT day, 'triggered', sum(events)::bigint FROM decisions_pruned
    WHERE offer_id = $1 AND day >= ($2 AT TIME ZONE 'UTC')::date GROUP BY 1
    UNION ALL
    SELECT (decided_at AT TIME ZONE 'UTC')::date, 'control', count(*)
    FROM decisions WHERE offer_id = $1 AND decided_at >= $2 AND outcome = 'control' GROUP BY 1
    UNION ALL
    SELECT (created_at AT TIME ZONE 'UTC')::date, 'queued', count(*)
    FROM deliveries WHERE offer_id = $1 AND created_at >= $2 GROUP BY 1
    UNION ALL
    SELECT (sent_at AT TIME ZONE 'UTC')::date, 'sent', count(*)
    FROM deliveries WHERE offer_id = $1 AND sent_at >= $2 AND status = 'sent' GROUP BY 1
    UNION ALL
    SELECT (opened_at AT TIME ZONE 'UTC')::date, 'opened', count(*)
    FROM deliveries WHERE offer_id = $1 AND opened_at >= $2 GROUP BY 1
    UNION ALL
    SELECT (redeemed_at AT TIME ZONE 'UTC')::date, 'redeemed', count(*)
    FROM deliveries WHERE offer_id = $1 AND redeemed_at >= $2 GROUP BY 1
) per_day
"""
_KEYS = ("triggered", "control", "queued", "sent", "opened", "redeemed")


async def offer_daily(pool: asyncpg.Pool, offer_id: UUID, today: date, days: int
                      ) -> dict[str, Any] | None:
    """The offer's figures per UTC day over the `days` ending `today`, each counted on the
    day it happened (over every day they sum to `offer_stats`'s for that period); None when
    no offer has this id."""
    first = today - timedelta(days=days - 1)
    since = datetime(first.year, first.month, first.day, tzinfo=UTC)
    async with pool.acquire() as conn, conn.transaction(readonly=True,
                                                        isolation="repeatable_read"):
        if not await conn.fetchval("SELECT true FROM offers WHERE offer_id = $1", offer_id):
            return None
        rows = await conn.fetch(_DAILY, offer_id, since)
    series = {k: [0] * days for k in _KEYS}
    for r in rows:
        i = (r["d"] - first).days
        if 0 <= i < days:
            series[r["k"]][i] += r["n"]
    return {
        "offer_id": str(offer_id),
        "days": [(first + timedelta(days=i)).isoformat() for i in range(days)],
        **series,
    }
