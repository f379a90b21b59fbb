"""Stores: where offers happen, with a time zone and opening hours."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web

from geopush.api.body import path_id, read_json
from geopush.api.errors import not_found
from geopush.api.openapi import BY_MARKETER, BY_STATS, PAGE, STORE, documented, page_of
from geopush.api.pagination import page, page_params
from geopush.api.runtime import RUNTIME
from geopush.places.stores import LISTING as _LISTING
from geopush.places.stores import (
    StoreCreate,
    StorePatch,
    create_store,
    parse_store,
    store_row,
    update_store,
)
from geopush.places.stores import delete_store as remove_store
from geopush.store.keyset import fetch_page
from geopush.timefmt import format_ts


def store_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["store_id"]),
        "external_id": row["external_id"],
        "name": row["name"],
        "timezone": row["timezone"],
        "location": {"lat": row["lat"], "lon": row["lon"]},
        "opening_hours": row["opening_hours"],
        "categories": list(row["categories"]),
        "created_at": format_ts(row["created_at"]),
        "updated_at": format_ts(row["updated_at"]),
        "alert_url": row["alert_url"],
    }


@documented("Create a store", auth=BY_MARKETER, body=StoreCreate, status=201, errors=(409,),
            response=STORE)
async def post_store(request: web.Request) -> web.Response:
    fields = parse_store(await read_json(request), partial=False)
    async with request.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        row = await create_store(conn, fields)
    return web.json_response(store_json(row), status=201)


@documented("List stores", auth=BY_STATS, query=PAGE, response=page_of(STORE))
async def list_stores(request: web.Request) -> web.Response:
    # Ops read the list too: the dashboard draws the fences on its map.
    limit, cursor = page_params(request)
    rows = await fetch_page(request.app[RUNTIME].pool, _LISTING, limit, cursor)
    return web.json_response(page([store_json(r) for r in rows], rows, limit, "store_id"))



@documented("One store", auth=BY_MARKETER, response=STORE)
async def get_store(request: web.Request) -> web.Response:
    row = await store_row(request.app[RUNTIME].pool, path_id(request, "store_id", "store"))
    return web.json_response(store_json(row))


@documented("Change a store", auth=BY_MARKETER, body=StorePatch, errors=(409,), response=STORE)
async def patch_store(request: web.Request) -> web.Response:
    store_id = path_id(request, "store_id", "store")
    fields = parse_store(await read_json(request), partial=True)
    async with request.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        row = await update_store(conn, store_id, fields)
    if row is None:
        raise not_found("store")
    return web.json_response(store_json(row))


@documented("Delete a store (its geofences lose it)", auth=BY_MARKETER, status=204, media=None)
async def delete_store(request: web.Request) -> web.Response:
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
