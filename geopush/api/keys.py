"""API keys: an admin makes keys for marketers, ops and apps (shown once), lists and revokes
them. A revoked key is refused by every process within a second (see `auth.KEY_CACHE_S`)."""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from aiohttp import web
from pydantic import Field

from geopush.api.body import path_id, read_model
from geopush.api.errors import not_found
from geopush.api.openapi import BY_ADMIN, KEY, KEY_CREATED, PAGE, documented, page_of
from geopush.api.pagination import page, page_params
from geopush.api.runtime import RUNTIME
from geopush.api.schema import Chars, RequestBody
from geopush.codes import Role
from geopush.store.keys import LISTING as KEYS_LISTING
from geopush.store.keys import create_key, revoke_key
from geopush.store.keyset import fetch_page
from geopush.timefmt import format_ts, format_ts_or_none


class KeyRequest(RequestBody):
    role: Annotated[Role, Field(strict=False)]
    name: Annotated[str, Chars(200)] | None = None


def key_json(row: asyncpg.Record) -> dict[str, Any]:
    """A key as listed: never the key itself, nor its hash."""
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "role": row["role"],
        "created_at": format_ts(row["created_at"]),
        "revoked_at": format_ts_or_none(row["revoked_at"]),
    }


@documented("Make a key (shown once)", auth=BY_ADMIN, body=KeyRequest, status=201,
            response=KEY_CREATED)
async def post_key(request: web.Request) -> web.Response:
    body = await read_model(request, KeyRequest)
    created = await create_key(request.app[RUNTIME].pool, body.role, body.name or "")
    return web.json_response(created, status=201)


@documented("List keys (never the key itself)", auth=BY_ADMIN, query=PAGE, response=page_of(KEY))
async def list_keys(request: web.Request) -> web.Response:
    limit, cursor = page_params(request)
    rows = await fetch_page(request.app[RUNTIME].pool, KEYS_LISTING, limit, cursor)
    return web.json_response(page([key_json(r) for r in rows], rows, limit, "id"))


@documented("Revoke a key: every process refuses it within 1 s", auth=BY_ADMIN, response=KEY)
async def delete_key(request: web.Request) -> web.Response:
    row = await revoke_key(request.app[RUNTIME].pool, path_id(request, "key_id", "key"))
    if row is None:
        raise not_found("key")
    return web.json_response(key_json(row))


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/keys", post_key),
        web.get("/v1/keys", list_keys),
        web.delete("/v1/keys/{key_id}", delete_key),
    ]
