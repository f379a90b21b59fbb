"""Keyset pagination in SQL, written once for every list: offers, deliveries, geofences,
stores and challenges.

A page is the rows after the cursor's (created_at, id) in the list's order, so pages stay
stable while rows are added, and each costs an index range scan however deep it is (an
OFFSET would read and drop every row before it). One more row than asked is fetched: its
presence proves there is a next page (`geopush.api.pagination` makes the cursor from it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg


@dataclass(frozen=True)
class Listing:
    """One list: its table, the columns it answers with, its id column and its order.

    Every name here comes from code, never from a request; only values are parameters.
    """

    table: str
    columns: str
    id_column: str
    newest_first: bool = False
    # Always applied, e.g. "deleted_at IS NULL".
    condition: str = ""
    # The time the list is ordered by (answered as `created_at`, which the cursor reads).
    time_column: str = "created_at"


async def fetch_page(pool: asyncpg.Pool | asyncpg.Connection, listing: Listing, limit: int,
                     after: tuple[datetime, UUID] | None,
                     equal: Mapping[str, Any] | None = None) -> list[asyncpg.Record]:
    """Up to `limit + 1` rows after `after` in the listing's order, where each column of
    `equal` holds its value (None values are left out: no filter)."""
    conditions = [listing.condition] if listing.condition else []
    args: list[Any] = [limit + 1]
    for column, value in (equal or {}).items():
        if value is not None:
            args.append(value)
            conditions.append(f"{column} = ${len(args)}")
    if after is not None:
        args += list(after)
        beyond = "<" if listing.newest_first else ">"
        conditions.append(f"({listing.time_column}, {listing.id_column}) {beyond}"
                          f" (${len(args) - 1}, ${len(args)})")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    time = listing.time_column
    order = (f"{time} DESC, {listing.id_column} DESC" if listing.newest_first
             else f"{time}, {listing.id_column}")
    sql = f"SELECT {listing.columns} FROM {listing.table}{where} ORDER BY {order} LIMIT $1"
    return list(await pool.fetch(sql, *args))
