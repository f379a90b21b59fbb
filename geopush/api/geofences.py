"""Geofences: the shapes that turn pings into visits. Every change reaches every process."""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

import asyncpg
from aiohttp import web

from geopush.api.auth import MARKETER, STATS, require_role
from geopush.api.body import (
    field_error,
    get_bool,
    get_number,
    get_str,
    path_id,
    read_json,
    read_object,
)
from geopush.api.errors import ApiError, not_found
from geopush.api.pagination import page, page_params
from geopush.places.geofences import COLUMNS as _COLUMNS
from geopush.places.geofences import (
    MAX_IMPORT_FEATURES,
    check_store,
    checked_geometry,
    import_features,
)
from geopush.runtime import RUNTIME
from geopush.store.geofence_index import notify_changed


def geofence_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["geofence_id"]),
        "name": row["name"],
        "store_id": str(row["store_id"]) if row["store_id"] else None,
        "geometry": row["geometry"],
        "dwell_s": row["dwell_s"],
        "enabled": row["enabled"],
        "area_m2": row["area_m2"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


async def post_geofence(request: web.Request) -> web.Response:
    await require_role(request, *MARKETER)
    body = await read_object(request)
    rt = request.app[RUNTIME]
    name = get_str(body, "name", required=True, max_len=200)
    dwell_s = get_number(body, "dwell_s", default=rt.config.geo.default_dwell_s,
                         lo=0, hi=7 * 86400, integer=True)
    enabled = get_bool(body, "enabled", default=True)
    if "geometry" not in body:
        raise field_error("geometry", "is required")
    geometry, area = checked_geometry(body["geometry"])
    async with rt.pool.acquire() as conn, conn.transaction():
        store_id = await check_store(conn, body.get("store_id"))
        row = await conn.fetchrow(
            "INSERT INTO geofences (geofence_id, name, store_id, geometry, dwell_s, enabled,"
            f" area_m2) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_COLUMNS}",
            uuid.uuid4(), name, store_id, geometry, dwell_s, enabled, area,
        )
        await notify_changed(conn, row["geofence_id"])
    await rt.fences.reload(rt.pool)
    return web.json_response(geofence_json(row), status=201)


async def list_geofences(request: web.Request) -> web.Response:
    # Ops read the list too: the dashboard draws the fences on its map.
    await require_role(request, *STATS)
    limit, cursor = page_params(request)
    conditions, args = [], [limit + 1]
    if cursor:
        args += list(cursor)
        conditions.append(f"(created_at, geofence_id) > (${len(args) - 1}, ${len(args)})")
    store = request.query.get("store_id")
    if store:
        try:
            args.append(UUID(store))
        except ValueError:
            raise field_error("store_id", "must be a store id") from None
        conditions.append(f"store_id = ${len(args)}")
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    rows = await request.app[RUNTIME].pool.fetch(
        f"SELECT {_COLUMNS} FROM geofences {where} ORDER BY created_at, geofence_id LIMIT $1",
        *args,
    )
    return web.json_response(page([geofence_json(r) for r in rows], rows, limit, "geofence_id"))



async def get_geofence(request: web.Request) -> web.Response:
    await require_role(request, *MARKETER)
    row = await request.app[RUNTIME].pool.fetchrow(
        f"SELECT {_COLUMNS} FROM geofences WHERE geofence_id = $1",
        path_id(request, "geofence_id", "geofence"),
    )
    if row is None:
        raise not_found("geofence")
    return web.json_response(geofence_json(row))


async def patch_geofence(request: web.Request) -> web.Response:
    await require_role(request, *MARKETER)
    gid = path_id(request, "geofence_id", "geofence")
    body = await read_object(request)
    rt = request.app[RUNTIME]
    fields: dict[str, Any] = {}
    if "name" in body:
        fields["name"] = get_str(body, "name", required=True, max_len=200)
    if "dwell_s" in body:
        fields["dwell_s"] = get_number(body, "dwell_s", required=True, lo=0, hi=7 * 86400,
                                       integer=True)
    if "enabled" in body:
        fields["enabled"] = get_bool(body, "enabled", required=True)
    if "geometry" in body:
        fields["geometry"], fields["area_m2"] = checked_geometry(body["geometry"])
    async with rt.pool.acquire() as conn, conn.transaction():
        if "store_id" in body:
            fields["store_id"] = await check_store(conn, body["store_id"])
        before = await conn.fetchrow(
            "SELECT geometry, enabled FROM geofences WHERE geofence_id = $1 FOR UPDATE", gid
        )
        if before is None:
            raise not_found("geofence")
        sets = [f"{k} = ${i}" for i, k in enumerate(fields, start=2)] + ["updated_at = now()"]
        row = await conn.fetchrow(
            f"UPDATE geofences SET {', '.join(sets)} WHERE geofence_id = $1"
            f" RETURNING {_COLUMNS}", gid, *fields.values(),
        )
        reshaped = "geometry" in fields and fields["geometry"] != before["geometry"]
        if reshaped or not row["enabled"]:
            # A moved or disabled fence ends its visits silently: no one walked out.
            await conn.execute("DELETE FROM visits WHERE geofence_id = $1", gid)
        await notify_changed(conn, gid)
    await rt.fences.reload(rt.pool)
    return web.json_response(geofence_json(row))


async def delete_geofence(request: web.Request) -> web.Response:
    await require_role(request, *MARKETER)
    gid = path_id(request, "geofence_id", "geofence")
    rt = request.app[RUNTIME]
    async with rt.pool.acquire() as conn, conn.transaction():
        deleted = await conn.fetchval(
            "DELETE FROM geofences WHERE geofence_id = $1 RETURNING true", gid
        )
        if not deleted:
            raise not_found("geofence")
        await conn.execute("DELETE FROM visits WHERE geofence_id = $1", gid)
        await notify_changed(conn, gid)
    await rt.fences.reload(rt.pool)
    return web.Response(status=204)


async def import_geofences(request: web.Request) -> web.Response:
    await require_role(request, *MARKETER)
    rt = request.app[RUNTIME]
    body = await read_json(request, limit=rt.config.limits.max_import_bytes)
    if not isinstance(body, dict) or body.get("type") != "FeatureCollection" or not isinstance(
        body.get("features"), list
    ):
        raise ApiError(400, "invalid", "expected a GeoJSON FeatureCollection")
    if len(body["features"]) > MAX_IMPORT_FEATURES:
        raise ApiError(413, "too_large", f"at most {MAX_IMPORT_FEATURES} features per import")
    async with rt.pool.acquire() as conn, conn.transaction():
        result = await import_features(conn, body["features"], rt.config.geo.default_dwell_s)
    await rt.fences.reload(rt.pool)
    return web.json_response(result)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/geofences/import", import_geofences),
        web.post("/v1/geofences", post_geofence),
        web.get("/v1/geofences", list_geofences),
        web.get("/v1/geofences/{geofence_id}", get_geofence),
        web.patch("/v1/geofences/{geofence_id}", patch_geofence),
        web.delete("/v1/geofences/{geofence_id}", delete_geofence),
    ]
