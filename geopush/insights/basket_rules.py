"""Mining jobs over the stored transactions: rules on demand, and the background run whose
rules and recommended categories the decisions read.

Every coroutine here does the CPU-heavy part in the process that runs it: the server hands
them to `MiningPool` (a child process); `geopush insights recompute` runs them itself, with
a progress bar.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from geopush.config import Config
from geopush.insights.basket_data import load_baskets
from geopush.insights.rules import Rule, RuleParams, mine_rules
from geopush.timefmt import format_ts

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

#: Held (exclusive) while a run replaces the rules, so two runs never interleave their writes.
BASKET_LOCK = 0x6270_6B74  # "bpkt"

_CLEAR_RULES = "DELETE FROM basket_rules"
_INSERT_RULES = """
INSERT INTO basket_rules (rank, antecedent, consequent, support, confidence, lift, count)
SELECT i.ord, ARRAY(SELECT jsonb_array_elements_text(i.x -> 0)),
       ARRAY(SELECT jsonb_array_elements_text(i.x -> 1)),
       ($2::float8[])[i.ord], ($3::float8[])[i.ord], ($4::float8[])[i.ord],
       ($5::integer[])[i.ord]
FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS i(x, ord)
"""
# Each customer's categories bought within the lookback, against the single-consequent
# rules: a rule recommends its consequent to whoever bought all of its antecedent and not
# the consequent; per category the best lift counts, and the top 3 are kept (best lift
# first, ties by name).
_WRITE_RECOMMENDATIONS = """
WITH bought AS (
    SELECT customer_id, array_agg(DISTINCT category) AS categories
    FROM transactions
    WHERE category IS NOT NULL AND customer_id <> '' AND ts >= $1
    GROUP BY customer_id
), ranked AS (
    SELECT b.customer_id, r.consequent[1] AS category, max(r.lift) AS lift
    FROM bought b
    JOIN basket_rules r ON cardinality(r.consequent) = 1
                       AND r.antecedent <@ b.categories
                       AND NOT (r.consequent[1] = ANY (b.categories))
    GROUP BY b.customer_id, r.consequent[1]
), ins AS (
    INSERT INTO customer_recommendations (customer_id, categories)
    SELECT customer_id, (array_agg(category ORDER BY lift DESC, category))[1:$2]
    FROM ranked
    WHERE customer_id IN (SELECT customer_id FROM customers)
    GROUP BY customer_id
    RETURNING 1
)
SELECT count(*) FROM ins
"""
_RECORD_RUN = """
INSERT INTO basket_runs (computed_at, baskets, rules, params, seconds)
VALUES ($1, $2, $3, $4, $5)
"""


def configured_params(config: Config) -> RuleParams:
    i = config.insights
    return RuleParams(min_support=i.min_support, min_confidence=i.min_confidence,
                      min_lift=i.min_lift, max_len=i.max_len)


def lookback_start(config: Config, now: datetime) -> datetime:
    return now - timedelta(days=config.segments.lookback_days)


def _logged_progress(label: str) -> Progress:
    """Progress in the log, once per tenth of the search."""
    last = [-1]

    def report(done: int, total: int) -> None:
        tenth = done * 10 // max(total, 1)
        if tenth != last[0]:
            last[0] = tenth
            log.info("basket mining progress", extra={"job": label, "done": done,
                                                      "total": total})

    return report


#: A background run's big statements (every customer's purchases against every rule) may
#: outlast the pool's per-statement timeout at a million baskets.
HEAVY_STATEMENT_S = 1800.0

async def mine_stored(pool: asyncpg.Pool, level: str, params: RuleParams, since: datetime,
                      store_id: UUID | None, max_itemsets: int,
                      progress: Progress | None = None) -> tuple[int, list[Rule]]:
    """The number of baskets and the rules of the stored transactions, as asked."""
    async with pool.acquire() as conn:
        baskets = await load_baskets(conn, level, since, store_id)
    return baskets.count, mine_rules(baskets, params, progress, max_itemsets)


async def recompute_rules(pool: asyncpg.Pool, config: Config, now: datetime,
                          progress: Progress | None = None) -> dict[str, Any]:
    """Mine the category rules of the lookback with the configured thresholds, store them,
    and rewrite every customer's recommended categories; a summary of the run."""
    from geopush.campaigns.offers import TOP_RECOMMENDED

    started = time.monotonic()
    params = configured_params(config)
    since = lookback_start(config, now)
    async with pool.acquire() as conn:
        baskets = await load_baskets(conn, "category", since, None)
    loaded = time.monotonic()
    n = baskets.count
    rules = mine_rules(baskets, params, progress or _logged_progress("recompute"),
                       config.insights.max_itemsets)
    del baskets
    mined = time.monotonic()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", BASKET_LOCK)
        await conn.execute(_CLEAR_RULES)
        await conn.execute(
            # The items as one jsonb list (ragged, so no text[][]); the pool's codec encodes.
            _INSERT_RULES, [[list(r.antecedent), list(r.consequent)] for r in rules],
            [r.support for r in rules], [r.confidence for r in rules], [r.lift for r in rules],
            [r.count for r in rules])
        await conn.execute("DELETE FROM customer_recommendations")
        customers = await conn.fetchval(_WRITE_RECOMMENDATIONS, since, TOP_RECOMMENDED,
                                        timeout=HEAVY_STATEMENT_S)
        seconds = time.monotonic() - started
        await conn.execute(_RECORD_RUN, now, n, len(rules), params.as_json(), seconds)
    summary = {"computed_at": format_ts(now), "baskets": n, "rules": len(rules),
               "customers_with_recommendations": customers, "seconds": round(seconds, 3),
               "load_s": round(loaded - started, 3), "mine_s": round(mined - loaded, 3),
               "write_s": round(seconds - (mined - started), 3)}
    log.info("basket rules recomputed", extra=summary)
    return summary


# --- jobs for a child process (module-level, so they can be sent to one) -----------------

async def _child_pool(dsn: str) -> asyncpg.Pool:
    from geopush.store.database import create_pool

    return await create_pool(dsn, 2)


async def recompute_job(dsn: str, config: Config, now: datetime) -> dict[str, Any]:
    pool = await _child_pool(dsn)
    try:
        return await recompute_rules(pool, config, now)
    finally:
        await pool.close()


async def mine_job(dsn: str, level: str, params: RuleParams, since: datetime,
                   store_id: UUID | None, max_itemsets: int) -> tuple[int, list[Rule]]:
    pool = await _child_pool(dsn)
    try:
        return await mine_stored(pool, level, params, since, store_id, max_itemsets,
                                 _logged_progress(f"query {level}"))
    finally:
        await pool.close()
