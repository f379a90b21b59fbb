"""Who a cross-selling or up-selling offer would reach: SQL over the stored purchases.

A rule's cross-sell audience is every customer who bought each antecedent category and not
the consequent within `[segments] lookback_days` — the same purchases an offer's audience
check reads at decision time, so the sizes shown are the customers such an offer can reach.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from geopush.campaigns.segments import FRAT_SEGMENTS
from geopush.insights.rules import Rule
from geopush.timefmt import format_ts

# Rules come in as a jsonb list (antecedents differ in length: no rectangular text[][]).
_CROSS_SELL_AUDIENCES = """
WITH r AS (
    SELECT (t.ord - 1)::integer AS i, ARRAY(SELECT jsonb_array_elements_text(t.x -> 'a')) AS a,
           t.x ->> 'c' AS c
    FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS t(x, ord)
), bought AS (
    SELECT customer_id, array_agg(DISTINCT category) AS categories
    FROM transactions
    WHERE category IS NOT NULL AND customer_id <> '' AND ts >= $2
    GROUP BY customer_id
)
SELECT r.i, coalesce(c.segment, 'unknown') AS segment, count(*) AS n
FROM r
JOIN bought b ON r.a <@ b.categories AND NOT (r.c = ANY (b.categories))
JOIN customers c ON c.customer_id = b.customer_id
GROUP BY r.i, 2
"""
_STORED_RULES = """
SELECT antecedent, consequent, support, confidence, lift, count FROM basket_rules
WHERE cardinality(consequent) = 1 ORDER BY rank LIMIT $1
"""
_LAST_RUN = "SELECT computed_at, baskets, params FROM basket_runs ORDER BY id DESC LIMIT 1"


def _segment_counts() -> dict[str, int]:
    return {str(s): 0 for s in FRAT_SEGMENTS}


def offer_audience(rule: Rule) -> dict[str, Any]:
    """The offer `audience` that reaches exactly this rule's cross-sell audience."""
    key = "bought_any" if len(rule.antecedent) == 1 else "bought_all"
    return {key: list(rule.antecedent), "not_bought": list(rule.consequent)}


async def stored_rules(conn: asyncpg.Connection | asyncpg.Pool, limit: int
                       ) -> tuple[dict[str, Any] | None, list[Rule]]:
    """The last background run (or None) and its best single-consequent rules."""
    run = await conn.fetchrow(_LAST_RUN)
    rows = await conn.fetch(_STORED_RULES, limit)
    rules = [Rule(tuple(r["antecedent"]), tuple(r["consequent"]), r["support"],
                  r["confidence"], r["lift"], r["count"]) for r in rows]
    return (None if run is None else dict(run)), rules


async def cross_sell_audiences(conn: asyncpg.Connection | asyncpg.Pool, rules: list[Rule],
                               since: datetime) -> list[dict[str, Any]]:
    """Each rule (single consequent) with its audience: size, and size per FRAT segment."""
    counts = [_segment_counts() for _ in rules]
    if rules:
        spec = [{"a": list(r.antecedent), "c": r.consequent[0]} for r in rules]
        for row in await conn.fetch(_CROSS_SELL_AUDIENCES, spec, since):
            per = counts[row["i"]]
            per[row["segment"]] = per.get(row["segment"], 0) + row["n"]
    out = []
    for rule, per in zip(rules, counts, strict=True):
        item = rule.as_json()
        item["audience"] = {"customers": sum(per.values()), "segments": per}
        item["offer"] = {"category": rule.consequent[0], "audience": offer_audience(rule)}
        out.append(item)
    return out


# --- up-selling ---------------------------------------------------------------------------

# A basket's value is the sum of its lines; its customer is the transaction's. Per segment:
# baskets, customers, the average basket and baskets per customer; per category and
# segment: the same over the baskets holding the category, and the average spent on it.
_UPSELL_BASKETS = """
CREATE TEMP TABLE _upsell_baskets ON COMMIT DROP AS
SELECT t.transaction_id, min(t.customer_id) AS customer_id, sum(t.amount) AS total
FROM transactions t
WHERE t.ts >= $1 AND t.customer_id <> '' AND ($2::uuid IS NULL OR t.store_id = $2)
GROUP BY t.transaction_id
"""
_UPSELL_SEGMENTS = """
SELECT coalesce(c.segment, 'unknown') AS segment, count(*) AS baskets,
       count(DISTINCT b.customer_id) AS customers, avg(b.total)::float8 AS avg_basket
FROM _upsell_baskets b JOIN customers c ON c.customer_id = b.customer_id
GROUP BY 1
"""
_UPSELL_CATEGORIES = """
SELECT l.category, coalesce(c.segment, 'unknown') AS segment, count(*) AS baskets,
       count(DISTINCT b.customer_id) AS customers, avg(b.total)::float8 AS avg_basket,
       avg(l.amount)::float8 AS avg_category_amount
FROM (
    SELECT transaction_id, category, sum(amount) AS amount FROM transactions
    WHERE ts >= $1 AND category IS NOT NULL AND customer_id <> ''
      AND ($2::uuid IS NULL OR store_id = $2)
    GROUP BY transaction_id, category
) l
JOIN _upsell_baskets b ON b.transaction_id = l.transaction_id
JOIN customers c ON c.customer_id = b.customer_id
GROUP BY 1, 2
ORDER BY 1, 2
"""


def _figures(row: Any) -> dict[str, Any]:
    out = {"baskets": row["baskets"], "customers": row["customers"],
           "avg_basket": row["avg_basket"],
           "baskets_per_customer": row["baskets"] / row["customers"]}
    if "avg_category_amount" in row:
        out["avg_category_amount"] = row["avg_category_amount"]
    return out


def _gap(per: dict[str, Any]) -> float | None:
    good, best = per.get("good"), per.get("best")
    if good is None or best is None:
        return None
    return float(best["avg_basket"] - good["avg_basket"])


async def upsell(pool: asyncpg.Pool, since: datetime, store_id: UUID | None
                 ) -> dict[str, Any]:
    """Average baskets per FRAT segment, overall and per category, since `since`.

    Turnover is frequency × average basket × duration: `good_to_best` is how much a good
    customer's average basket trails a best one's, what an up-selling offer aims to close.
    """
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        await conn.execute(_UPSELL_BASKETS, since, store_id)
        overall = {r["segment"]: _figures(r) for r in await conn.fetch(_UPSELL_SEGMENTS)}
        categories: dict[str, dict[str, Any]] = {}
        for r in await conn.fetch(_UPSELL_CATEGORIES, since, store_id):
            categories.setdefault(r["category"], {})[r["segment"]] = _figures(r)
    return {
        "since": format_ts(since),
        "segments": overall,
        "good_to_best": _gap(overall),
        "categories": [{"category": name, "segments": per, "good_to_best": _gap(per)}
                       for name, per in categories.items()],
    }
