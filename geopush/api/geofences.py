"""Geofences: the shapes that turn pings into visits. Every change reaches every process."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from uuid import UUID

import asyncpg
from aiohttp import web

from geopush.api.body import body_chunks, field_error, path_id, read_model
from geopush.api.errors import ApiError
from geopush.api.import_slots import running_import
from geopush.api.openapi import (
    BY_MARKETER,
    BY_STATS,
    FEATURE_COLLECTION,
    GEOFENCE,
    PAGE,
    Query,
    documented,
    page_of,
)
from geopush.api.pagination import page, page_params
from geopush.api.runtime import RUNTIME
from geopush.places.geofence_import import import_geofence_stream
from geopush.places.geofences import LISTING as _LISTING
from geopush.places.geofences import (
    GeofenceCreate,
    GeofencePatch,
    check_room,
    check_store,
    checked_geometry,
    geofence_row,
    insert_geofence,
    remove_geofence,
    update_geofence,
)
from geopush.store.keyset import fetch_page
from geopush.timefmt import format_ts

#: Geometries with more positions than this are checked in a worker thread (a 2,000-vertex
#: polygon takes tens of milliseconds of GEOS and Python), smaller ones inline.
_INLINE_CHECK_POSITIONS = 200


def geofence_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["geofence_id"]),
        "name": row["name"],
        "store_id": str(row["store_id"]) if row["store_id"] else None,
        "geometry": row["geometry"],
        "dwell_s": row["dwell_s"],
        "enabled": row["enabled"],
        "area_m2": row["area_m2"],
        "created_at": format_ts(row["created_at"]),
        "updated_at": format_ts(row["updated_at"]),
    }


async def checked_geometry_off_loop(obj: Any) -> tuple[Any, float]:
    """`checked_geometry`, in a worker thread when the geometry is large.

    The work is bounded by the geometry's size (at most 2,000 vertices, O(n log n) checks,
    an O(n) area); moving the large ones off the event loop keeps `/healthz` and ingest
    answering while they are checked.
    """
    if _positions(obj) <= _INLINE_CHECK_POSITIONS:
        return checked_geometry(obj)
    return await asyncio.to_thread(checked_geometry, obj)


def _positions(obj: Any) -> int:
    """A quick upper bound of the positions in a GeoJSON-like value (nesting ≤ 4)."""
    count, level = 0, [obj.get("coordinates")] if isinstance(obj, dict) else []
    for _ in range(4):
        nested = [x for item in level if isinstance(item, list) for x in item]
        count += len(nested)
        level = nested
    return count


@documented("Create a geofence (422 saying why a geometry is invalid)", auth=BY_MARKETER,
            body=GeofenceCreate, status=201, errors=(422,), response=GEOFENCE)
async def post_geofence(request: web.Request) -> web.Response:
    body = await read_model(request, GeofenceCreate)
    rt = request.app[RUNTIME]
    name, enabled = body.name, body.enabled
    dwell_s = rt.config.geo.default_dwell_s if body.dwell_s is None else body.dwell_s
    geometry, area = await checked_geometry_off_loop(body.geometry)
    async with rt.pool.acquire() as conn, conn.transaction():
        store_id = await check_store(conn, body.store_id)
        await check_room(conn, 1, rt.config.limits.max_geofences)
        row = await insert_geofence(conn, name, store_id, geometry, dwell_s, enabled, area)
    await rt.fences.reload(rt.pool, {str(row["geofence_id"])})
    return web.json_response(geofence_json(row), status=201)


@documented("List geofences", auth=BY_STATS,
            query=(*PAGE, Query("store_id", {"type": "string", "format": "uuid"})),
            response=page_of(GEOFENCE))
async def list_geofences(request: web.Request) -> web.Response:
    # Ops read the list too: the dashboard draws the fences on its map.
    limit, cursor = page_params(request)
    store_id = None
    store = request.query.get("store_id")
    if store:
        try:
            store_id = UUID(store)
        except ValueError:
            raise field_error("store_id", "must be a store id") from None
    rows = await fetch_page(request.app[RUNTIME].pool, _LISTING, limit, cursor,
                            {"store_id": store_id})
    return web.json_response(page([geofence_json(r) for r in rows], rows, limit, "geofence_id"))



@documented("One geofence", auth=BY_MARKETER, response=GEOFENCE)
async def get_geofence(request: web.Request) -> web.Response:
    row = await geofence_row(request.app[RUNTIME].pool,
                             path_id(request, "geofence_id", "geofence"))
    return web.json_response(geofence_json(row))


@documented("Change a geofence (a new shape or disabling closes its visits)", auth=BY_MARKETER,
            body=GeofencePatch, errors=(422,), response=GEOFENCE)
async def patch_geofence(request: web.Request) -> web.Response:
    gid = path_id(request, "geofence_id", "geofence")
    body = (await read_model(request, GeofencePatch)).given()
    rt = request.app[RUNTIME]
    fields: dict[str, Any] = {k: body[k] for k in ("name", "dwell_s", "enabled") if k in body}
    if "geometry" in body:
        fields["geometry"], fields["area_m2"] = await checked_geometry_off_loop(
            body["geometry"])
    async with rt.pool.acquire() as conn, conn.transaction():
        if "store_id" in body:
            fields["store_id"] = await check_store(conn, body["store_id"])
        row = await update_geofence(conn, gid, fields)
    await rt.fences.reload(rt.pool, {str(gid)})
    return web.json_response(geofence_json(row))


@documented("Delete a geofence", auth=BY_MARKETER, status=204, media=None)
async def delete_geofence(request: web.Request) -> web.Response:
    gid = path_id(request, "geofence_id", "geofence")
    rt = request.app[RUNTIME]
    async with rt.pool.acquire() as conn, conn.transaction():
        await remove_geofence(conn, gid)
    await rt.fences.reload(rt.pool, {str(gid)})
    return web.Response(status=204)


@documented("Import a GeoJSON FeatureCollection", auth=BY_MARKETER,
            body_media={"application/json": FEATURE_COLLECTION}, errors=(429,))
async def import_geofences(request: web.Request) -> web.Response:
    """A FeatureCollection, streamed (see places/geofence_import.py): 408 when the body
    stalls, 413 from Content-Length before reading, past `[limits] max_import_bytes`, or at
    the 50,001st feature; at most `[limits] max_concurrent_imports` at once (429)."""
    rt = request.app[RUNTIME]
    limit = rt.config.limits.max_import_bytes
    what = "import ([limits] max_import_bytes)"
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "too_large", f"{what} larger than {limit} bytes")
    with running_import(request):
        result = await import_geofence_stream(
            rt.pool, rt.config, body_chunks(request, limit, what=what))
    await rt.fences.reload(rt.pool)
    # Up to 50,000 errors: serialized off the event loop too.
    body = await asyncio.to_thread(json.dumps, result)
    return web.Response(body=body.encode(), content_type="application/json")


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/geofences/import", import_geofences),
        web.post("/v1/geofences", post_geofence),
        web.get("/v1/geofences", list_geofences),
        web.get("/v1/geofences/{geofence_id}", get_geofence),
        web.patch("/v1/geofences/{geofence_id}", patch_geofence),
        web.delete("/v1/geofences/{geofence_id}", delete_geofence),
    ]
