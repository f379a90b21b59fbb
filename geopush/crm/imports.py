"""Imports by kind: CRM customers and transactions, stores (CSV), geofences (GeoJSON).

The CSV streaming and staging machinery is `csv_stream`; each kind's columns, row checks
and merge live in `customer_rows`, `transaction_rows` and `store_rows`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from geopush.config import Config
from geopush.crm.csv_stream import CsvKind, ImportFailed, import_csv
from geopush.crm.customer_rows import CUSTOMERS
from geopush.crm.store_rows import STORES
from geopush.crm.transaction_rows import TRANSACTIONS

__all__ = ["CSV_KINDS", "ImportFailed", "import_geofences_file", "import_stream"]

CSV_KINDS: dict[str, CsvKind] = {k.name: k for k in (CUSTOMERS, TRANSACTIONS, STORES)}


async def import_stream(pool: asyncpg.Pool, config: Config, kind: str,
                        chunks: AsyncIterable[bytes], *, recompute: bool = True,
                        now: Callable[[], datetime] | None = None) -> dict[str, Any]:
    """Import a CSV stream of `kind`; after customers or transactions, recompute segments.

    The recompute runs after the import has committed, in its own transaction: the import
    stands even if it fails (the daily run will catch up), and its answer is included.
    """
    csv_kind = CSV_KINDS[kind]
    if csv_kind is TRANSACTIONS:
        result = await _import_purchases(pool, config, chunks, now)
    else:
        async with pool.acquire() as conn:
            result = await import_csv(conn, csv_kind, chunks)
    if recompute and csv_kind.feeds_segments:
        from geopush.crm.segments import recompute_segments

        clock = now or (lambda: datetime.now(UTC))
        result["segments"] = await recompute_segments(pool, config, clock())
    return result


async def _import_purchases(pool: asyncpg.Pool, config: Config, chunks: AsyncIterable[bytes],
                            now: Callable[[], datetime] | None) -> dict[str, Any]:
    """Transactions, with their loyalty points credited in the import's own transaction
    (SPEC 11), then the purchase challenges they complete."""
    from geopush.ingest.decisions import decide_offers
    from geopush.loyalty.purchases import credit_purchases, settle_purchase_challenges

    async with pool.acquire() as conn, conn.transaction():
        result = await import_csv(conn, TRANSACTIONS, chunks)
        credited = await credit_purchases(conn, config)
    tally = await settle_purchase_challenges(pool, config, credited.pop("subjects"),
                                             (now or (lambda: datetime.now(UTC)))(),
                                             decide_offers)
    tally.points["purchase"] += credited["points"]
    tally.observe()
    result["loyalty"] = {"purchases": credited["purchases"], "points": credited["points"],
                         "challenges_completed": tally.challenges}
    return result


async def import_geofences_file(pool: asyncpg.Pool, config: Config,
                                chunks: AsyncIterable[bytes]) -> dict[str, Any]:
    """A GeoJSON FeatureCollection, as `POST /v1/geofences/import` takes it, streamed."""
    from geopush.geo.feature_collection import FeatureCollectionError
    from geopush.places.geofence_import import TooManyFeatures, import_geofence_stream

    try:
        return await import_geofence_stream(pool, config, chunks)
    except (FeatureCollectionError, TooManyFeatures) as exc:
        raise ImportFailed(str(exc)) from None
