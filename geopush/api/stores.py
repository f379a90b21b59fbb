"""Stores: where offers happen, with a time zone and opening hours."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from geopush.api.auth import MARKETER, STATS, require_role
from geopush.api.body import path_id, read_object
from geopush.api.errors import not_found
from geopush.api.pagination import page, page_params
from geopush.places.stores import COLUMNS as _COLUMNS
from geopush.places.stores import create_store, parse_store, update_store
from geopush.places.stores import delete_store as remove_store
from geopush.runtime import RUNTIME


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


async def post_store(request: web.Request) -> web.Response:
    await require_role(request, *MARKETER)
    fields = parse_store(await read_object(request), partial=False)
    async with request.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        row = await create_store(conn, fields)
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
    async with request.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        row = await update_store(conn, store_id, fields)
    if row is None:
        raise not_found("store")
    return web.json_response(store_json(row))


async def delete_store(request: web.Request) -> web.Response:
    await require_role(request, *MARKETER)
    rt = request.app[RUNTIME]
    async with rt.pool.acquire() as conn, conn.transaction():
        if not await remove_store(conn, path_id(request, "store_id", "store")):
            raise not_found("store")
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
