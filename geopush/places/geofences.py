"""Geofences: their fields, checking shapes and import features (the streamed import is
geofence_import).

`GeofenceFields` is the one definition of what a geofence takes: `POST` and `PATCH
/v1/geofences` (and the OpenAPI document) and each feature of an import are checked by
models built on it, so a feature imported is a geofence the API would accept.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from uuid import UUID

import asyncpg
from pydantic import ConfigDict, Field, WithJsonSchema

from geopush.errors import Conflict, NotFound, Unprocessable
from geopush.fields import ABSENT, InvalidBody, NonBlank, RequestBody, WholeIn, check_body
from geopush.geo.geometry import area_m2, parse_geometry
from geopush.store.geofence_index import notify_changed
from geopush.store.keyset import Listing
from geopush.validate import field_error, has_unstorable_text

COLUMNS = ("geofence_id, name, store_id, geometry, dwell_s, enabled, area_m2,"
           " created_at, updated_at")
# Its list (GET /v1/geofences): oldest first, by keyset.
LISTING = Listing("geofences", COLUMNS, "geofence_id")
MAX_IMPORT_FEATURES = 50_000
MAX_DWELL_S = 7 * 86400

# The shape is checked by `checked_geometry` (a 422 saying why), so here it is any JSON value.
Geometry = Annotated[Any, WithJsonSchema({
    "description": "GeoJSON Polygon or MultiPolygon (lon, lat), or"
                   ' {"type": "Circle", "center": [lon, lat], "radius_m": r} (10 to 50,000 m)',
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"enum": ["Polygon", "MultiPolygon", "Circle"]},
                   "coordinates": {"type": "array"},
                   "center": {"type": "array", "items": {"type": "number"},
                              "minItems": 2, "maxItems": 2},
                   "radius_m": {"type": "number"}},
})]
StoreRef = Annotated[UUID, Field(strict=False)]
GeofenceName = Annotated[str, NonBlank(200)]
DwellS = Annotated[int, WholeIn(0, MAX_DWELL_S)]


class GeofenceFields(RequestBody):
    """What every geofence has, however it is given; `dwell_s: null` is `[geo]
    default_dwell_s`."""

    name: GeofenceName
    geometry: Geometry
    dwell_s: DwellS | None = None


class GeofenceCreate(GeofenceFields):
    store_id: StoreRef | None = None
    enabled: bool = True


class GeofencePatch(RequestBody):
    """Any of the fields; absent ones are unchanged, `store_id: null` unlinks the store."""

    name: GeofenceName = ABSENT
    geometry: Geometry = None
    store_id: StoreRef | None = None
    dwell_s: DwellS = ABSENT
    enabled: bool = ABSENT


class ImportedGeofence(GeofenceFields):
    """A feature of an import: its store is named by the CRM's external id (SPEC section 7).

    Other properties (a GIS layer carries many) are left aside, not refused."""

    model_config = ConfigDict(extra="ignore")

    store_external_id: Annotated[str, NonBlank(200)] | None = None


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
    """One GeoJSON Feature as geofence fields, checked by `ImportedGeofence`; ValueError or
    GeometryError say why not.

    A Point with `properties.radius_m` is a circle. A missing or blank name becomes
    "geofence <feature id>", and a number given as a name or store id is read as its text
    (GIS layers number their features); anything else follows the API's rules.
    """
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
    body = {**props, "geometry": geometry,
            "name": _text(props.get("name")) or f"geofence {feature.get('id', '')}".strip(),
            "store_external_id": _text(props.get("store_external_id")) or None}
    try:
        checked = check_body(ImportedGeofence, body)
    except InvalidBody as exc:
        raise ValueError(f"properties.{exc.message}") from None
    fence = parse_geometry(geometry)
    return {"name": checked.name, "geometry": geometry, "area_m2": area_m2(fence),
            "dwell_s": default_dwell_s if checked.dwell_s is None else checked.dwell_s,
            "store_external_id": checked.store_external_id}


def _text(value: Any) -> Any:
    """A number as its text, blank text as none; other values are left for the model."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and not value.strip():
        return None
    return value


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
