"""Stores: where offers happen, with a time zone and opening hours."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from aiohttp import web

from geopush.api.auth import MARKETER, STATS, require_role
from geopush.api.body import field_error, get_number, get_str, path_id, read_object
from geopush.api.errors import ApiError, not_found
from geopush.api.pagination import page, page_params
from geopush.campaigns.offers import OfferError, parse_opening_hours
from geopush.config import is_timezone
from geopush.runtime import RUNTIME
from geopush.store.geofence_index import notify_changed

_COLUMNS = ("store_id, external_id, name, timezone, lat, lon, opening_hours, categories,"
            " created_at, updated_at")


def store_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["store_id"]),
        "external_id": row["external_id"],
        "name": row["name"],
        "timezone": row["timezone"],
        "location": {"lat": row["lat"], "lon": row["lon"]},
        "opening_hours": row["opening_hours"],
        "categories": list(row["categories"]),
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


def parse_store(body: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    """Validated columns from a POST (all required) or PATCH (any) body."""
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


async def post_store(request: web.Request) -> web.Response:
    await require_role(request, *MARKETER)
    fields = parse_store(await read_object(request), partial=False)
    store_id = uuid.uuid4()
    cols = ["store_id", *fields]
    try:
        row = await request.app[RUNTIME].pool.fetchrow(
            f"INSERT INTO stores ({', '.join(cols)}) VALUES"
            f" ({', '.join(f'${i}' for i in range(1, len(cols) + 1))}) RETURNING {_COLUMNS}",
            store_id, *fields.values(),
        )
    except asyncpg.UniqueViolationError:
        raise ApiError(409, "duplicate", "a store with this external_id exists") from None
    return web.json_response(store_json(row), status=201)


async def list_stores(request: web.Request) -> web.Response:
    # Ops read the list too: the dashboard draws the fences on its map.
    await require_role(request, *STATS)
    limit, cursor = page_params(request)
    args: list[Any] = [limit + 1]
    where = ""
    if cursor:
        where = "WHERE (created_at, store_id) > ($2, $3)"
        args += list(cursor)
    rows = await request.app[RUNTIME].pool.fetch(
        f"SELECT {_COLUMNS} FROM stores {where} ORDER BY created_at, store_id LIMIT $1", *args
    )
    return web.json_response(page([store_json(r) for r in rows], rows, limit, "store_id"))



async def get_store(request: web.Request) -> web.Response:
    await require_role(request, *MARKETER)
    row = await request.app[RUNTIME].pool.fetchrow(
        f"SELECT {_COLUMNS} FROM stores WHERE store_id = $1", path_id(request, "store_id", "store"),
    )
    if row is None:
        raise not_found("store")
    return web.json_response(store_json(row))


async def patch_store(request: web.Request) -> web.Response:
    await require_role(request, *MARKETER)
    store_id = path_id(request, "store_id", "store")
    fields = parse_store(await read_object(request), partial=True)
    sets = [f"{name} = ${i}" for i, name in enumerate(fields, start=2)] + ["updated_at = now()"]
    rt = request.app[RUNTIME]
    try:
        async with rt.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"UPDATE stores SET {', '.join(sets)} WHERE store_id = $1 RETURNING {_COLUMNS}",
                store_id, *fields.values(),
            )
    except asyncpg.UniqueViolationError:
        raise ApiError(409, "duplicate", "a store with this external_id exists") from None
    if row is None:
        raise not_found("store")
    return web.json_response(store_json(row))


async def delete_store(request: web.Request) -> web.Response:
    await require_role(request, *MARKETER)
    rt = request.app[RUNTIME]
    async with rt.pool.acquire() as conn, conn.transaction():
        deleted = await conn.fetchval(
            "DELETE FROM stores WHERE store_id = $1 RETURNING true",
            path_id(request, "store_id", "store"),
        )
        if not deleted:
            raise not_found("store")
        await notify_changed(conn)  # its geofences lose their store
    await rt.fences.reload(rt.pool)
    return web.Response(status=204)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/stores", post_store),
        web.get("/v1/stores", list_stores),
        web.get("/v1/stores/{store_id}", get_store),
        web.patch("/v1/stores/{store_id}", patch_store),
        web.delete("/v1/stores/{store_id}", delete_store),
    ]
