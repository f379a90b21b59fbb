"""Segment recompute (SPEC section 5): aggregate in SQL, score in numpy, write back in bulk.

The FRAT rules themselves live in the pure `geopush.campaigns.segments`; this module only
moves columns between PostgreSQL and it, so a run over 100,000+ customers costs three
statements, not one per customer:

1. one GROUP BY over `transactions` fills a temporary table with every customer's figures
   (first transaction ever; last transaction, count, sum and distinct categories within
   `[segments] lookback_days` as of `now`), numbered 1..n;
2. one SELECT reads those figures back as arrays (one row, so no per-row Python objects),
   handed to `segment_columns`;
3. one UPDATE … FROM unnest(arrays) writes scores and segments, joined on that number.

A customer with no known creation date (created by a transactions import before the
customers import named them) counts as created when geopush first saw them. Transactions
stamped after `now` still count (a till clock a little ahead must not hide a purchase),
with a recency of 0 days.

Runs hold an exclusive advisory lock; customer imports hold it shared, so a recompute and an
upsert of the same rows never wait on each other's row locks in opposite orders.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg
import numpy as np

from geopush.campaigns.segments import FRAT_SEGMENTS, SegmentRules, segment_columns
from geopush.config import Config
from geopush.timefmt import format_ts

#: Advisory lock serializing recomputes (exclusive) against customer upserts (shared).
SEGMENTS_LOCK = 0x6765_7367  # "gesg"

_CREATE_FIGURES = """
CREATE TEMP TABLE _frat_figures (
    idx         integer PRIMARY KEY,
    customer_id text NOT NULL,
    created_s   double precision NOT NULL,
    first_s     double precision NOT NULL,
    last_s      double precision NOT NULL,
    frequency   integer NOT NULL,
    amount      numeric NOT NULL,
    types       text[] NOT NULL
) ON COMMIT DROP
"""
# Two levels of grouping: (customer, category) first, so the distinct categories come out of
# an ordinary hash aggregate instead of a sort per customer. Nothing here asks for an order
# (the numbering is only a join key, and a profile sorts its categories when shown): at 1M
# transactions, sorting 500k (customer, category) groups by text cost as much as the rest.
# Frequency counts transactions, not lines: each transaction once, at its lowest line (the
# probe runs only for lines above 1, so single-line data pays nothing for it); the amount
# is the sum of every line.
_FILL_FIGURES = """
INSERT INTO _frat_figures
SELECT row_number() OVER (), c.customer_id,
       date_part('epoch', coalesce(c.created_at, c.imported_at)),
       coalesce(date_part('epoch', a.first_ts), 'NaN'),
       coalesce(date_part('epoch', a.last_ts), 'NaN'),
       coalesce(a.frequency, 0), coalesce(a.amount, 0), coalesce(a.types, '{}')
FROM customers c
LEFT JOIN (
    SELECT customer_id, min(first_ts) AS first_ts, max(last_ts) AS last_ts,
           sum(frequency)::integer AS frequency, sum(amount) AS amount,
           array_agg(category) FILTER (WHERE category IS NOT NULL AND lines > 0) AS types
    FROM (
        SELECT customer_id, category, min(ts) AS first_ts,
               max(ts) FILTER (WHERE ts >= $1) AS last_ts,
               count(*) FILTER (WHERE ts >= $1) AS lines,
               count(*) FILTER (WHERE ts >= $1 AND (line = 1 OR NOT EXISTS (
                   SELECT 1 FROM transactions first_line
                   WHERE first_line.customer_id = t.customer_id
                     AND first_line.transaction_id = t.transaction_id
                     AND first_line.line < t.line))) AS frequency,
               coalesce(sum(amount) FILTER (WHERE ts >= $1), 0) AS amount
        FROM transactions t
        GROUP BY customer_id, category
    ) per_category
    GROUP BY customer_id
) a ON a.customer_id = c.customer_id
"""
_READ_FIGURES = """
SELECT array_agg(idx) AS idx, array_agg(created_s) AS created_s, array_agg(first_s) AS first_s,
       array_agg(last_s) AS last_s, array_agg(frequency) AS frequency,
       array_agg(amount::float8) AS amount, array_agg(customer_id) AS customer_id,
       array_agg(amount) AS amount_exact,
       array_agg(array_to_string(types, E'\\x1f')) AS types
FROM _frat_figures
"""
# The figures are joined as one subquery over this session's table: on a Citus cluster it is
# computed on the coordinator and the update is then routed by customer_id (an update joining
# the distributed table with a temporary table and a function directly crashes Citus 14).
# Everything the update needs comes as arrays, segment names included, each customer's
# categories joined by the unit separator (a control character no category name holds).
# Plainer than it could be, for Citus 14: an update joining the customers with this
# session's temporary table, or indexing an array parameter by a column, crashes it, and it
# refuses a stable function (an array cast) over the rows. An update from arrays is routed
# by customer_id on a cluster as on one PostgreSQL.
_WRITE_SEGMENTS = """
UPDATE customers c
SET segment = u.segment,
    r_score = nullif(u.r, 0), f_score = nullif(u.f, 0), a_score = nullif(u.a, 0),
    recency_days = nullif(u.recency_days, -1),
    frequency = u.frequency, amount = u.amount, types = string_to_array(u.types, E'\\x1f'),
    segment_computed_at = $7
FROM unnest($1::text[], $2::text[], $3::smallint[], $4::smallint[], $5::smallint[],
            $6::integer[], $8::integer[], $9::numeric[], $10::text[])
     AS u(customer_id, segment, r, f, a, recency_days, frequency, amount, types)
WHERE c.customer_id = u.customer_id
"""
_RECORD_RUN = "INSERT INTO segment_runs (computed_at, counts) VALUES ($1, $2)"
_LIVE_COUNTS = "SELECT segment, count(*) AS n FROM customers GROUP BY segment"
_LAST_RUN = "SELECT max(computed_at) FROM segment_runs"


def segment_rules(config: Config) -> SegmentRules:
    s = config.segments
    return SegmentRules(lookback_days=s.lookback_days, new_days=s.new_days,
                        at_risk_days=s.at_risk_days, inactive_days=s.inactive_days)


def _empty_counts() -> dict[str, int]:
    return {str(s): 0 for s in FRAT_SEGMENTS}


async def recompute_segments(pool: asyncpg.Pool, config: Config, now: datetime
                             ) -> dict[str, Any]:
    """Every customer's FRAT figures and segment as of `now` (aware), in one transaction.

    Returns `{"segments": {"new": n, ...}, "computed_at": ISO time, "customers": n}` and
    records the same counts in `segment_runs`.
    """
    rules = segment_rules(config)
    since = now - timedelta(days=rules.lookback_days)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SEGMENTS_LOCK)
        # The per-category grouping and the join sort comfortably in memory at 1M rows.
        await conn.execute("SET LOCAL work_mem = '128MB'")
        await conn.execute(_CREATE_FIGURES)
        await conn.execute(_FILL_FIGURES, since)
        figures = await conn.fetchrow(_READ_FIGURES)
        counts = _empty_counts()
        if figures["idx"] is not None:
            names = [str(s) for s in FRAT_SEGMENTS]
            cols = segment_columns(
                now, rules,
                np.array(figures["created_s"], dtype=np.float64),
                np.array(figures["first_s"], dtype=np.float64),
                np.array(figures["last_s"], dtype=np.float64),
                np.array(figures["frequency"], dtype=np.float64),
                np.array(figures["amount"], dtype=np.float64),
            )
            await conn.execute(
                _WRITE_SEGMENTS, figures["customer_id"],
                [names[i] for i in cols.segment.tolist()],
                cols.r.tolist(), cols.f.tolist(), cols.a.tolist(),
                cols.recency_days.tolist(), now,
                figures["frequency"], figures["amount_exact"], figures["types"],
            )
            tally = np.bincount(cols.segment, minlength=len(FRAT_SEGMENTS)).tolist()
            counts = {str(s): tally[i] for i, s in enumerate(FRAT_SEGMENTS)}
        await conn.execute(_RECORD_RUN, now, counts)
    total = sum(counts.values())
    return {"segments": counts, "computed_at": format_ts(now), "customers": total}


async def segment_summary(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, Any]:
    """`GET /v1/segments`: today's counts per segment and when they were last computed.

    Counted live rather than read from the last run, so an erased customer leaves the
    figures at once; `computed_at` is null until the first recompute.
    """
    counts = _empty_counts()
    for row in await conn.fetch(_LIVE_COUNTS):
        if row["segment"] in counts:
            counts[row["segment"]] = row["n"]
    last = await conn.fetchval(_LAST_RUN)
    return {"segments": counts, "computed_at": format_ts(last) if last else None,
            "customers": sum(counts.values())}
