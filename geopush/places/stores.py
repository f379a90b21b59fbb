"""Stores: checking their fields, and writing them so that conversions stay counted.

A transaction names its store by `store_external_id`; `transactions.store_id` is that name
resolved. Every write of a store (API create, edit, delete; CSV import) re-resolves it, so
transactions imported before their store existed, or whose store was deleted and created
again under a new id, count for conversions as soon as the store is there.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal
from uuid import UUID

import asyncpg
from pydantic import Field

from geopush.alerts.destination import url_problem
from geopush.campaigns.errors import OfferError
from geopush.campaigns.opening_hours import ClockEnd, parse_opening_hours
from geopush.errors import Conflict, NotFound
from geopush.fields import ABSENT, Finite, NonBlank, RequestBody, TimeZone, check_body
from geopush.store.geofence_index import notify_changed
from geopush.store.keyset import Listing
from geopush.validate import field_error

COLUMNS = ("store_id, external_id, name, timezone, lat, lon, opening_hours, categories,"
           " created_at, updated_at, alert_url")
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


# The one definition of a store's fields, for `POST`/`PATCH /v1/stores` (and the OpenAPI
# document) and for a row of the stores CSV alike.

class Location(RequestBody):
    lat: Annotated[float, Finite(-90, 90)]
    lon: Annotated[float, Finite(-180, 180)]


# Each bound is read by the one HH:MM rule; that a start is not 24:00 is checked after, by
# `parse_opening_hours`, which knows which bound is which.
OpeningHours = Annotated[
    dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
         list[Annotated[list[ClockEnd], Field(min_length=2, max_length=2)]]],
    Field(description='{"mon": [["08:00", "21:00"]], ...}; a day left out is closed;'
                      " an interval whose end is not after its start runs past midnight"),
]

AlertUrl = Annotated[str, Field(max_length=2000, description="Where store alerts are POSTed"
                                " (SPEC section 15): https, or http on a loopback host")]


class StoreCreate(RequestBody):
    external_id: Annotated[str, NonBlank(200)]
    name: Annotated[str, NonBlank(200)]
    timezone: TimeZone
    location: Location
    opening_hours: OpeningHours | None = None
    categories: list[Annotated[str, NonBlank(100)]] | None = None
    alert_url: AlertUrl | None = None


class StorePatch(RequestBody):
    """Any of the fields; absent ones are unchanged."""

    external_id: Annotated[str, NonBlank(200)] = ABSENT
    name: Annotated[str, NonBlank(200)] = ABSENT
    timezone: TimeZone = ABSENT
    location: Location = ABSENT
    opening_hours: OpeningHours | None = None
    categories: list[Annotated[str, NonBlank(100)]] | None = None
    alert_url: AlertUrl | None = None


def parse_store(body: Any, *, partial: bool) -> dict[str, Any]:
    """Columns from a create (all required) or edit (any) body, checked by `StoreCreate` or
    `StorePatch`; `Invalid` naming every bad field otherwise. Opening hours are then read
    for what a pattern cannot say (an interval's end after its start, or past midnight)."""
    checked = check_body(StorePatch if partial else StoreCreate, body)
    given = checked.model_dump(mode="json", exclude_unset=True)
    out: dict[str, Any] = {k: given[k] for k in ("external_id", "name", "timezone")
                           if k in given}
    if "location" in given:
        out["lat"], out["lon"] = given["location"]["lat"], given["location"]["lon"]
    if "opening_hours" in given:
        try:
            out["opening_hours"] = (
                None if given["opening_hours"] is None
                else parse_opening_hours(given["opening_hours"])
            )
        except (OfferError, ValueError) as exc:
            raise field_error("opening_hours", str(exc)) from None
    if "categories" in given:
        out["categories"] = given["categories"] or []
    if "alert_url" in given:
        url = given["alert_url"]
        if url is not None:
            problem = url_problem(url)
            if problem is not None:
                raise field_error("alert_url", problem)
        out["alert_url"] = url
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
