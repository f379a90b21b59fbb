"""Stores: where offers happen, with a time zone and opening hours."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import asyncpg
from aiohttp import web
from pydantic import Field

from geopush.api.auth import MARKETER, require_role
from geopush.api.body import field_error, path_id, read_body
from geopush.api.errors import ApiError, not_found
from geopush.api.pagination import page, page_params
from geopush.api.schema import Name, Number, RequestBody, TimeZone
from geopush.campaigns.offers import OfferError, parse_opening_hours
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


class Location(RequestBody):
    lat: Number(-90, 90)  # type: ignore[valid-type]
    lon: Number(-180, 180)  # type: ignore[valid-type]


HHMM = Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")]
OpeningHours = Annotated[
    dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
         list[Annotated[list[HHMM], Field(min_length=2, max_length=2)]]],
    Field(description='{"mon": [["08:00", "21:00"]], ...}; a day left out is closed;'
                      " an interval whose end is not after its start runs past midnight"),
]


class StoreCreate(RequestBody):
    external_id: Name(200)  # type: ignore[valid-type]
    name: Name(200)  # type: ignore[valid-type]
    timezone: TimeZone
    location: Location
    opening_hours: OpeningHours | None = None
    categories: list[Name(100)] | None = None  # type: ignore[valid-type]


class StorePatch(RequestBody):
    """Any of the fields; absent ones are unchanged."""

    external_id: Name(200) = None  # type: ignore[valid-type]
    name: Name(200) = None  # type: ignore[valid-type]
    timezone: TimeZone = None  # type: ignore[assignment]
    location: Location = None  # type: ignore[assignment]
    opening_hours: OpeningHours | None = None
    categories: list[Name(100)] | None = None  # type: ignore[valid-type]


def parse_store(body: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    """Columns from a validated POST or PATCH body (`StoreCreate`, `StorePatch`)."""
    out: dict[str, Any] = {k: body[k] for k in ("external_id", "name", "timezone") if k in body}
    if "location" in body:
        out["lat"], out["lon"] = body["location"]["lat"], body["location"]["lon"]
    if "opening_hours" in body:
        try:
            out["opening_hours"] = (
                None if body["opening_hours"] is None
                else parse_opening_hours(body["opening_hours"])
            )
        except (OfferError, ValueError) as exc:
            raise field_error("opening_hours", str(exc)) from None
    if "categories" in body:
        out["categories"] = body["categories"] or []
    return out


async def post_store(request: web.Request) -> web.Response:
    await require_role(request, *MARKETER)
    fields = parse_store(await read_body(request, StoreCreate), partial=False)
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
    await require_role(request, *MARKETER)
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
    fields = parse_store(await read_body(request, StorePatch), partial=True)
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
