"""Baskets out of PostgreSQL: the distinct categories (or products) of each transaction.

A basket is one `transaction_id` (all its lines); it counts when it holds at least one item
at the level asked (a transaction whose lines name no product is no basket at the product
level). Rows stream through a cursor into compact arrays, so a million baskets never become
a million Python lists at once.
"""

from __future__ import annotations

from array import array
from datetime import datetime
from uuid import UUID

import asyncpg
import numpy as np

from geopush.insights.itemsets import Baskets

LEVELS = ("category", "product")

# One query per level: the column name is a constant, never the caller's text.
_BASKETS = {
    level: f"""
SELECT array_agg(DISTINCT {level}) AS items
FROM transactions
WHERE {level} IS NOT NULL AND ts >= $1 AND ($2::uuid IS NULL OR store_id = $2)
GROUP BY transaction_id
"""
    for level in LEVELS
}
_FETCH_ROWS = 20_000
#: The first fetch runs the whole GROUP BY: at a million baskets it may outlast the pool's
#: per-statement timeout.
_QUERY_TIMEOUT_S = 1800.0


async def load_baskets(conn: asyncpg.Connection, level: str, since: datetime,
                       store_id: UUID | None = None) -> Baskets:
    """The baskets since `since` (at one store, or all), items numbered by sorted name."""
    ids: dict[str, int] = {}
    ends = array("q", [0])
    items = array("i")
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        async for row in conn.cursor(_BASKETS[level], since, store_id, prefetch=_FETCH_ROWS,
                                       timeout=_QUERY_TIMEOUT_S):
            for name in row["items"]:
                item = ids.get(name)
                if item is None:
                    item = ids[name] = len(ids)
                items.append(item)
            ends.append(len(items))
    # Renumber so item ids follow the names' order (stable output, whatever the scan order).
    names = sorted(ids)
    renumber = np.empty(len(names), dtype=np.int32)
    for new, name in enumerate(names):
        renumber[ids[name]] = new
    raw = np.frombuffer(items, dtype=np.int32) if items else np.zeros(0, dtype=np.int32)
    return Baskets(indptr=np.frombuffer(ends, dtype=np.int64).copy(),
                   items=renumber[raw] if len(raw) else raw.copy(), names=tuple(names))
