"""Stores: checking their fields, and writing them so that conversions stay counted.

A transaction names its store by `store_external_id`; `transactions.store_id` is that name
resolved. Every write of a store (API create, edit, delete; CSV import) re-resolves it, so
transactions imported before their store existed, or whose store was deleted and created
again under a new id, count for conversions as soon as the store is there.
"""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

import asyncpg

from geopush.campaigns.errors import OfferError
from geopush.campaigns.opening_hours import parse_opening_hours
from geopush.config import is_timezone
from geopush.errors import Conflict, NotFound
from geopush.store.geofence_index import notify_changed
from geopush.store.keyset import Listing
from geopush.validate import field_error, get_number, get_str

COLUMNS = ("store_id, external_id, name, timezone, lat, lon, opening_hours, categories,"
           " created_at, updated_at")
# Its list (GET /v1/stores): oldest first, by keyset.
LISTING = Listing("stores", COLUMNS, "store_id")

# Point a store's transactions at it, and release those that named it under another
# external_id (an edit that renamed the store).
_LINK = """
UPDATE transactions SET store_id = $1
WHERE store_external_id = $2 AND store_id IS DISTINCT FROM $1
"""
_UNLINK_RENAMED = """
UPDATE transactions SET store_id = NULL
WHERE store_id = $1 AND store_external_id IS DISTINCT FROM $2
"""
_UNLINK = "UPDATE transactions SET store_id = NULL WHERE store_id = $1"


def parse_store(body: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    """Validated columns from a create (all required) or edit (any) body; `Invalid` if not."""
    out: dict[str, Any] = {}
    required = not partial
    for key in ("external_id", "name"):
        if key in body or required:
            out[key] = get_str(body, key, required=True, max_len=200)
    if "timezone" in body or required:
        tz = get_str(body, "timezone", required=True, max_len=64)
        if not is_timezone(tz):
            raise field_error("timezone", f"unknown IANA time zone {tz!r}")
        out["timezone"] = tz
    if "location" in body or required:
        loc = body.get("location")
        if not isinstance(loc, dict):
            raise field_error("location", "must be an object {lat, lon}")
        out["lat"] = get_number(loc, "lat", required=True, lo=-90, hi=90)
        out["lon"] = get_number(loc, "lon", required=True, lo=-180, hi=180)
    if "opening_hours" in body:
        try:
            out["opening_hours"] = (
                None if body["opening_hours"] is None
                else parse_opening_hours(body["opening_hours"])
            )
        except (OfferError, ValueError) as exc:
            raise field_error("opening_hours", str(exc)) from None
    if "categories" in body:
        cats = body["categories"]
        if cats is None:
            cats = []
        if not isinstance(cats, list) or not all(isinstance(c, str) and c for c in cats):
            raise field_error("categories", "must be a list of category names")
        out["categories"] = cats
    return out


def _duplicate() -> Conflict:
    return Conflict("a store with this external_id exists", code="duplicate")


async def link_transactions(conn: asyncpg.Connection, store_id: UUID, external_id: str) -> None:
    """Resolve `transactions.store_id` for this store after it was created or edited."""
    await conn.execute(_LINK, store_id, external_id)
    await conn.execute(_UNLINK_RENAMED, store_id, external_id)


async def create_store(conn: asyncpg.Connection, fields: dict[str, Any]) -> asyncpg.Record:
    """Insert a store from `parse_store(..., partial=False)`; the caller holds a transaction."""
    cols = ["store_id", *fields]
    try:
        async with conn.transaction():  # a savepoint: a duplicate leaves the caller usable
            row = await conn.fetchrow(
                f"INSERT INTO stores ({', '.join(cols)}) VALUES"
                f" ({', '.join(f'${i}' for i in range(1, len(cols) + 1))}) RETURNING {COLUMNS}",
                uuid.uuid4(), *fields.values(),
            )
    except asyncpg.UniqueViolationError:
        raise _duplicate() from None
    await link_transactions(conn, row["store_id"], row["external_id"])
    return row


async def update_store(
    conn: asyncpg.Connection, store_id: UUID, fields: dict[str, Any]
) -> asyncpg.Record | None:
    """Apply `parse_store(..., partial=True)`; None when no store has this id."""
    sets = [f"{name} = ${i}" for i, name in enumerate(fields, start=2)] + ["updated_at = now()"]
    try:
        async with conn.transaction():
            row = await conn.fetchrow(
                f"UPDATE stores SET {', '.join(sets)} WHERE store_id = $1 RETURNING {COLUMNS}",
                store_id, *fields.values(),
            )
    except asyncpg.UniqueViolationError:
        raise _duplicate() from None
    if row is not None:
        await link_transactions(conn, row["store_id"], row["external_id"])
    return row


async def delete_store(conn: asyncpg.Connection, store_id: UUID) -> bool:
    """Delete the store; its transactions wait, unlinked, for a store of the same name."""
    deleted = await conn.fetchval("DELETE FROM stores WHERE store_id = $1 RETURNING true",
                                  store_id)
    if not deleted:
        return False
    await conn.execute(_UNLINK, store_id)
    await notify_changed(conn)  # its geofences lose their store
    return True


async def store_row(conn: asyncpg.Connection | asyncpg.Pool, store_id: UUID) -> asyncpg.Record:
    """The store; `NotFound` when there is none."""
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM stores WHERE store_id = $1", store_id)
    if row is None:
        raise NotFound("store")
    return row
