"""Customer value on the seeds' three levers (SPEC section 15), per FRAT segment or store.

CA = frequency × basket × duration. Over the transactions of `[segments] lookback_days`
(erased customers left out), per group (the customer's segment, `unknown` without a
profile; or the store the transactions were made at):

- `customers`: distinct customers with a transaction in the group;
- `relationship_months`: mean, over those customers, of the months (30.44 days) from the
  start of the relationship (the profile's `created_at` or the first transaction, the
  earlier) to now, at least 1;
- `frequency_per_month`: mean over the customers of their transactions divided by the
  months observed (the relationship, at most the lookback, at least 1);
- `average_basket`: the group's amount over its number of transactions;
- `value`: frequency_per_month × average_basket × relationship_months.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

import asyncpg

MONTH_S = 30.44 * 86_400
GROUPINGS = ("segment", "store")

_VALUE = """
WITH tx AS (
    SELECT t.customer_id, t.ts, t.amount, c.created_at,
           CASE WHEN $1 = 'segment' THEN coalesce(c.segment, 'unknown')
                ELSE t.store_id::text END AS grp
    FROM transactions t LEFT JOIN customers c ON c.customer_id = t.customer_id
    WHERE t.customer_id <> '' AND t.ts >= $2 AND t.ts <= $3
      AND ($1 = 'segment' OR t.store_id IS NOT NULL)
), per AS (
    SELECT grp, customer_id, count(*) AS n, sum(amount)::float8 AS amount,
           greatest(extract(epoch FROM $3 - least(min(created_at), min(ts))) / $4, 1.0)
               AS months
    FROM tx GROUP BY grp, customer_id
)
SELECT grp, count(*) AS customers, sum(n)::bigint AS purchases, sum(amount) AS amount,
       avg(n / least(months, greatest($5::float8, 1.0))) AS frequency,
       avg(months) AS months
FROM per GROUP BY grp ORDER BY grp
"""
_STORE_NAMES = "SELECT store_id::text AS id, name FROM stores WHERE store_id::text = ANY($1)"


async def customer_value(pool: asyncpg.Pool, by: Literal["segment", "store"], now: datetime,
                         lookback_days: int) -> list[dict[str, Any]]:
    since = now - timedelta(days=lookback_days)
    async with pool.acquire() as conn:
        rows = await conn.fetch(_VALUE, by, since, now, MONTH_S,
                                lookback_days * 86_400 / MONTH_S)
        names: dict[str, str] = {}
        if by == "store":
            names = {r["id"]: r["name"] for r in
                     await conn.fetch(_STORE_NAMES, [r["grp"] for r in rows])}
    out = []
    for r in rows:
        basket = r["amount"] / r["purchases"] if r["purchases"] else None
        frequency, months = float(r["frequency"]), float(r["months"])
        item: dict[str, Any] = {
            "group": r["grp"], "customers": r["customers"],
            "frequency_per_month": frequency, "average_basket": basket,
            "relationship_months": months,
            "value": None if basket is None else frequency * basket * months,
        }
        if by == "store":
            item["name"] = names.get(r["grp"])
        out.append(item)
    out.sort(key=lambda i: -(i["value"] or 0))
    return out
