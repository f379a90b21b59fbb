"""Offers and stores as the pure campaign code sees them, read from their rows; and the
offers table's statements for the API's routes."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from geopush.campaigns.offers import Offer, StoreInfo, offer_from_json
from geopush.errors import Invalid, NotFound, Unprocessable
from geopush.store.keyset import Listing
from geopush.store.offer_keys import CHANNEL as OFFERS_CHANNEL
from geopush.timefmt import format_ts


def offer_from_row(row: asyncpg.Record | dict[str, Any]) -> Offer:
    definition = dict(row["definition"])
    definition["id"] = str(row["offer_id"])
    definition["created_at"] = format_ts(row["created_at"])
    definition["status"] = row["status"]
    return offer_from_json(definition)


def store_from_row(row: asyncpg.Record) -> StoreInfo:
    return StoreInfo(id=str(row["store_id"]), name=row["name"], timezone=row["timezone"],
                     opening_hours=row["opening_hours"])


# --- the offers table, as the API's routes change it ---------------------------------------

COLUMNS = "offer_id, trigger, status, definition, created_at, updated_at"
# Its list (GET /v1/offers): oldest first, by keyset, deleted offers left out.
LISTING = Listing("offers", COLUMNS, "offer_id", condition="deleted_at IS NULL")


async def known_targets(conn: asyncpg.Connection, geofences: list[UUID], stores: list[UUID]
                        ) -> tuple[set[UUID], set[UUID]]:
    """Which of these geofence and store ids exist."""
    known_g = {r[0] for r in await conn.fetch(
        "SELECT geofence_id FROM geofences WHERE geofence_id = ANY($1::uuid[])", geofences)}
    known_s = {r[0] for r in await conn.fetch(
        "SELECT store_id FROM stores WHERE store_id = ANY($1::uuid[])", stores)}
    return known_g, known_s


def _uuids(values: tuple[str, ...], field: str) -> list[UUID]:
    out = []
    for i, v in enumerate(values):
        try:
            out.append(UUID(v))
        except ValueError:
            raise Invalid(f"{field}.{i}", "not an id") from None
    return out


async def checked_targets(conn: asyncpg.Connection, offer: Offer
                          ) -> tuple[list[UUID], list[UUID]]:
    """The offer's geofence and store ids; they must name existing ones, since a typo would
    silently never fire (`Unprocessable` `unknown_target` listing them, 422)."""
    geofences = _uuids(offer.geofence_ids, "geofence_ids")
    stores = _uuids(offer.store_ids, "store_ids")
    known_g, known_s = await known_targets(conn, geofences, stores)
    missing = [{"field": "geofence_ids", "id": str(g)} for g in geofences if g not in known_g]
    missing += [{"field": "store_ids", "id": str(s)} for s in stores if s not in known_s]
    if missing:
        raise Unprocessable("offer targets unknown geofences or stores",
                            code="unknown_target", details=missing)
    return geofences, stores


async def offer_row(conn: asyncpg.Connection | asyncpg.Pool, offer_id: UUID | str, *,
                    lock: bool = False) -> asyncpg.Record:
    """An offer not deleted; `NotFound` otherwise."""
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM offers WHERE offer_id = $1 AND deleted_at IS NULL"
        + (" FOR UPDATE" if lock else ""), offer_id)
    if row is None:
        raise NotFound("offer")
    return row


async def insert_offer(conn: asyncpg.Connection, offer_id: UUID, trigger: str,
                       geofences: list[UUID], stores: list[UUID], status: str,
                       definition: dict[str, Any]) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        "INSERT INTO offers (offer_id, trigger, geofence_ids, store_ids, status, definition)"
        f" VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}",
        offer_id, trigger, geofences, stores, status, definition)
    await _log_status(conn, offer_id, status, row["created_at"])
    await notify_offers_changed(conn)
    return row


async def update_offer(conn: asyncpg.Connection, offer_id: UUID | str, trigger: str,
                       geofences: list[UUID], stores: list[UUID], status: str,
                       definition: dict[str, Any]) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        "UPDATE offers SET trigger = $2, geofence_ids = $3, store_ids = $4, status = $5,"
        f" definition = $6, updated_at = now() WHERE offer_id = $1 RETURNING {COLUMNS}",
        offer_id, trigger, geofences, stores, status, definition)
    await _log_status(conn, offer_id, status, row["updated_at"])
    await notify_offers_changed(conn)
    return row


async def remove_offer(pool: asyncpg.Pool, offer_id: UUID | str) -> None:
    """Soft delete: the offer stops at once, its decisions and results stay readable;
    `NotFound` when there is none."""
    async with pool.acquire() as conn, conn.transaction():
        deleted_at = await conn.fetchval(
            "UPDATE offers SET deleted_at = now(), status = 'paused' WHERE offer_id = $1"
            " AND deleted_at IS NULL RETURNING deleted_at", offer_id)
        if deleted_at is None:
            raise NotFound("offer")
        await _log_status(conn, offer_id, "deleted", deleted_at)
        await notify_offers_changed(conn)


async def _log_status(conn: asyncpg.Connection, offer_id: UUID | str, status: str,
                      at: datetime) -> None:
    """When each offer was active, for previews of the past (SPEC 16): written with every
    change, in its transaction. The time is the row's own (a value, not a function, so the
    statement runs alike on one PostgreSQL and on Citus)."""
    await conn.execute("INSERT INTO offer_status_log (offer_id, status, at)"
                       " VALUES ($1, $2, $3)", UUID(str(offer_id)), status, at)


async def notify_offers_changed(conn: asyncpg.Connection | asyncpg.Pool) -> None:
    """Tell every process to re-read the active offers' keys (store/offer_keys.py);
    delivered when the caller's transaction commits. Every statement that changes
    `offers` calls it (a trigger would do it for all, but Citus refuses triggers on
    reference tables)."""
    await conn.execute("SELECT pg_notify($1, '')", OFFERS_CHANNEL)
