"""What an offer did to the three levers of customer value (SPEC section 15).

CA = frequency × basket × duration. For the offer's treatment and control customers (each
customer in the group of their first contact, as `conversion` groups them), over
`[campaigns] conversion_window_days` from that first contact:

- `visits_per_customer`: purchase visits (transactions, at any store: the relationship,
  not only the offer's stores) per customer of the group;
- `average_basket`: the amount of those transactions over their number (null without one);
- `retained`: the share of the group's customers with a transaction or a visit event (a
  geofence entered by one of their devices) in the window;
- `ratio`: treatment / control of each figure, null where control is 0 or null.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

_LEVERS = """
WITH first AS (
    SELECT DISTINCT ON (customer_id) customer_id, outcome AS grp, decided_at AS since
    FROM decisions
    WHERE offer_id = $1 AND outcome IN ('queued', 'control') AND customer_id IS NOT NULL
    ORDER BY customer_id, decided_at
), bought AS (
    SELECT f.customer_id, count(*) AS n, sum(t.amount) AS amount
    FROM first f JOIN transactions t ON t.customer_id = f.customer_id
    WHERE t.ts >= f.since AND t.ts <= f.since + make_interval(days => $2)
    GROUP BY f.customer_id
), visited AS (
    SELECT DISTINCT f.customer_id
    FROM first f JOIN devices d ON d.customer_id = f.customer_id
    JOIN events e ON e.device_id = d.device_id
    WHERE e.type = 'enter' AND e.ts >= f.since AND e.ts <= f.since + make_interval(days => $2)
)
SELECT f.grp, count(*) AS customers, coalesce(sum(b.n), 0)::bigint AS purchases,
       coalesce(sum(b.amount), 0)::float8 AS amount,
       count(*) FILTER (WHERE b.n > 0 OR v.customer_id IS NOT NULL) AS retained
FROM first f LEFT JOIN bought b USING (customer_id) LEFT JOIN visited v USING (customer_id)
GROUP BY f.grp
"""


def _figures(row: asyncpg.Record | None) -> dict[str, Any]:
    customers = row["customers"] if row else 0
    purchases = row["purchases"] if row else 0
    return {
        "customers": customers,
        "visits_per_customer": purchases / customers if customers else None,
        "average_basket": row["amount"] / purchases if row and purchases else None,
        "retained": row["retained"] / customers if row and customers else None,
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


async def offer_levers(conn: asyncpg.Connection | asyncpg.Pool, offer_id: UUID,
                       window_days: int) -> dict[str, Any]:
    rows = {r["grp"]: r for r in await conn.fetch(_LEVERS, offer_id, window_days)}
    treatment, control = _figures(rows.get("queued")), _figures(rows.get("control"))
    keys = ("visits_per_customer", "average_basket", "retained")
    return {"window_days": window_days, "treatment": treatment, "control": control,
            "ratio": {k: _ratio(treatment[k], control[k]) for k in keys}}
