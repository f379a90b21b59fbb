"""Geofences: checking shapes and import features (the streamed import is geofence_import)."""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

import asyncpg

from geopush.errors import Conflict, NotFound, Unprocessable
from geopush.geo.geometry import area_m2, parse_geometry
from geopush.store.geofence_index import notify_changed
from geopush.store.keyset import Listing
from geopush.validate import field_error, has_unstorable_text

COLUMNS = ("geofence_id, name, store_id, geometry, dwell_s, enabled, area_m2,"
           " created_at, updated_at")
# Its list (GET /v1/geofences): oldest first, by keyset.
LISTING = Listing("geofences", COLUMNS, "geofence_id")
MAX_IMPORT_FEATURES = 50_000


def checked_geometry(obj: Any) -> tuple[Any, float]:
    """The geometry as given and its area; `GeometryError` (a 422) saying why when it is no
    fence."""
    return obj, area_m2(parse_geometry(obj))


async def check_store(conn: asyncpg.Connection, store_id: Any) -> UUID | None:
    if store_id is None:
        return None
    try:
        sid = UUID(str(store_id))
    except ValueError:
        raise field_error("store_id", "must be a store id") from None
    if not await conn.fetchval("SELECT true FROM stores WHERE store_id = $1", sid):
        raise Unprocessable("store_id names no store", code="unknown_store",
                            details=[{"field": "store_id", "reason": "unknown_store"}])
    return sid


def feature_to_geofence(feature: Any, default_dwell_s: int) -> dict[str, Any]:
    """One GeoJSON Feature as geofence fields; ValueError/GeometryError say why not."""
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise ValueError("not a GeoJSON Feature")
    if has_unstorable_text(feature):
        raise ValueError("a NUL character or a lone surrogate in a string")
    props = feature.get("properties") or {}
    if not isinstance(props, dict):
        raise ValueError("properties must be an object")
    geometry = feature.get("geometry")
    if isinstance(geometry, dict) and geometry.get("type") == "Point":
        radius = props.get("radius_m")
        if radius is None:
            raise ValueError("a Point feature needs properties.radius_m")
        geometry = {"type": "Circle", "center": geometry.get("coordinates"), "radius_m": radius}
    fence = parse_geometry(geometry)
    dwell = props.get("dwell_s", default_dwell_s)
    if isinstance(dwell, bool) or not isinstance(dwell, int) or not 0 <= dwell <= 7 * 86400:
        raise ValueError("properties.dwell_s must be a whole number of seconds")
    name = props.get("name") or f"geofence {feature.get('id', '')}".strip()
    store_ext = props.get("store_external_id")
    return {"name": str(name)[:200], "geometry": geometry, "area_m2": area_m2(fence),
            "dwell_s": dwell, "store_external_id": None if store_ext is None else str(store_ext)}


# Creations of geofences take this lock, so concurrent creates and imports count exactly.
_COUNT_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('geopush:geofences', 0))"


async def check_room(conn: asyncpg.Connection, adding: int, limit: int) -> None:
    """409 `too_many_geofences` unless `adding` more stay within `[limits] max_geofences`.

    Every process keeps every enabled fence in memory and rebuilds its index on a change,
    so the count is what bounds memory and the time a change takes to apply.
    """
    await conn.execute(_COUNT_LOCK)
    have = await conn.fetchval("SELECT count(*) FROM geofences")
    if have + adding > limit:
        raise Conflict(f"{have} geofences exist; {adding} more would pass [limits]"
                       f" max_geofences ({limit})", code="too_many_geofences")


# --- the geofences table, as the API's routes change it ----------------------------------------

async def insert_geofence(conn: asyncpg.Connection, name: str, store_id: UUID | None,
                          geometry: Any, dwell_s: int, enabled: bool, area: float
                          ) -> asyncpg.Record:
    """Create one checked geofence and tell every process's index (in the transaction)."""
    row: asyncpg.Record = await conn.fetchrow(
        "INSERT INTO geofences (geofence_id, name, store_id, geometry, dwell_s, enabled,"
        f" area_m2) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}",
        uuid.uuid4(), name, store_id, geometry, dwell_s, enabled, area,
    )
    await notify_changed(conn, row["geofence_id"])
    return row


async def geofence_row(conn: asyncpg.Connection | asyncpg.Pool, gid: UUID) -> asyncpg.Record:
    """The geofence; `NotFound` when there is none."""
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM geofences WHERE geofence_id = $1", gid)
    if row is None:
        raise NotFound("geofence")
    return row


async def update_geofence(conn: asyncpg.Connection, gid: UUID, fields: dict[str, Any]
                          ) -> asyncpg.Record:
    """Set checked `fields` (column names from the request model); a moved or disabled
    fence ends its visits silently (no one walked out). `NotFound` when there is none."""
    before = await conn.fetchrow(
        "SELECT geometry, enabled FROM geofences WHERE geofence_id = $1 FOR UPDATE", gid)
    if before is None:
        raise NotFound("geofence")
    sets = [f"{k} = ${i}" for i, k in enumerate(fields, start=2)] + ["updated_at = now()"]
    row: asyncpg.Record = await conn.fetchrow(
        f"UPDATE geofences SET {', '.join(sets)} WHERE geofence_id = $1 RETURNING {COLUMNS}",
        gid, *fields.values(),
    )
    reshaped = "geometry" in fields and fields["geometry"] != before["geometry"]
    if reshaped or not row["enabled"]:
        await conn.execute("DELETE FROM visits WHERE geofence_id = $1", gid)
    await notify_changed(conn, gid)
    return row


async def remove_geofence(conn: asyncpg.Connection, gid: UUID) -> None:
    """Delete the geofence and its open visits; `NotFound` when there is none."""
    if not await conn.fetchval("DELETE FROM geofences WHERE geofence_id = $1 RETURNING true",
                               gid):
        raise NotFound("geofence")
    await conn.execute("DELETE FROM visits WHERE geofence_id = $1", gid)
    await notify_changed(conn, gid)
