"""Devices: registration by the app, profile and consent by the device itself, erasure."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from aiohttp import web

from geopush.api.auth import APP, hash_secret, new_secret, require_device, require_role
from geopush.api.body import field_error, get_bool, get_str, read_object
from geopush.codes import Platform
from geopush.config import is_timezone
from geopush.runtime import RUNTIME

_DEVICE_COLUMNS = (
    "device_id, platform, locale, timezone, customer_id, fcm_token_active, "
    "fcm_token IS NOT NULL AS has_fcm_token, consent_location, consent_push, "
    "consent_categories, created_at, updated_at, consent_leaderboard"
)


def device_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "device_id": str(row["device_id"]),
        "platform": row["platform"],
        "locale": row["locale"],
        "timezone": row["timezone"],
        "customer_id": row["customer_id"],
        "fcm_token_active": row["fcm_token_active"] and row["has_fcm_token"],
        "consent": {
            "location": row["consent_location"],
            "push": row["consent_push"],
            "categories": row["consent_categories"],
            "leaderboard": row["consent_leaderboard"],
        },
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


def _profile_fields(body: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    """The device fields a body sets; an unknown zone or an empty token is a 400."""
    out: dict[str, Any] = {}
    if "fcm_token" in body or not partial:
        out["fcm_token"] = get_str(body, "fcm_token", required=not partial, max_len=4096)
    if "locale" in body:
        out["locale"] = get_str(body, "locale", max_len=35)
    if "timezone" in body:
        tz = get_str(body, "timezone", max_len=64)
        if tz is not None and not is_timezone(tz):
            raise field_error("timezone", f"unknown IANA time zone {tz!r}")
        out["timezone"] = tz
    if "customer_id" in body:
        out["customer_id"] = get_str(body, "customer_id", max_len=200)
    return out


async def register(request: web.Request) -> web.Response:
    await require_role(request, *APP)
    body = await read_object(request)
    platform = get_str(body, "platform", required=True)
    if platform not in {p.value for p in Platform}:
        raise field_error("platform", "must be android, ios or web")
    fields = _profile_fields(body, partial=False)
    device_id = uuid.uuid4()
    token = new_secret("gpd")
    await request.app[RUNTIME].pool.execute(
        "INSERT INTO devices (device_id, token_hash, fcm_token, platform, locale, timezone,"
        " customer_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        device_id, hash_secret(token), fields["fcm_token"], platform,
        fields.get("locale"), fields.get("timezone"), fields.get("customer_id"),
    )
    return web.json_response({"device_id": str(device_id), "device_token": token}, status=201)


async def patch_me(request: web.Request) -> web.Response:
    device_id = await require_device(request)
    fields = _profile_fields(await read_object(request), partial=True)
    if "fcm_token" in fields and fields["fcm_token"] is None:
        raise field_error("fcm_token", "must be a string")
    sets = [f"{name} = ${i}" for i, name in enumerate(fields, start=2)]
    if "fcm_token" in fields:
        # A new token from the app reactivates a device whose old token FCM refused.
        sets.append("fcm_token_active = true")
    sets.append("updated_at = now()")
    row = await request.app[RUNTIME].pool.fetchrow(
        f"UPDATE devices SET {', '.join(sets)} WHERE device_id = $1 RETURNING {_DEVICE_COLUMNS}",
        device_id, *fields.values(),
    )
    return web.json_response(device_json(row))


async def get_me(request: web.Request) -> web.Response:
    device_id = await require_device(request)
    row = await request.app[RUNTIME].pool.fetchrow(
        f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE device_id = $1", device_id
    )
    return web.json_response(device_json(row))


async def put_consent(request: web.Request) -> web.Response:
    device_id = await require_device(request)
    body = await read_object(request)
    location = get_bool(body, "location", required=True)
    push = get_bool(body, "push", required=True)
    leaderboard = get_bool(body, "leaderboard")
    categories = body.get("categories")
    if categories is not None and (
        not isinstance(categories, list)
        or not all(isinstance(c, str) and c and len(c) <= 100 for c in categories)
    ):
        raise field_error("categories", "must be a list of category names, or null for all")
    pool = request.app[RUNTIME].pool
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "UPDATE devices SET consent_location = $2, consent_push = $3,"
            " consent_categories = $4, updated_at = now() WHERE device_id = $1"
            f" RETURNING {_DEVICE_COLUMNS}",
            device_id, location, push, categories,
        )
        await conn.execute(
            "INSERT INTO consent_log (device_id, location, push, categories)"
            " VALUES ($1, $2, $3, $4)",
            device_id, location, push, categories,
        )
        if leaderboard is not None:
            row = await set_leaderboard_consent(conn, device_id, leaderboard)
    return web.json_response(device_json(row))


async def set_leaderboard_consent(conn: asyncpg.Connection, device_id: uuid.UUID,
                                  leaderboard: bool) -> asyncpg.Record:
    """Leaderboard consent (SPEC 11) is the customer's: set on one phone, it holds on all
    their phones, so a withdrawal anywhere takes them off every leaderboard at once."""
    await conn.execute(
        "UPDATE devices SET consent_leaderboard = $2 WHERE device_id = $1"
        " OR customer_id = (SELECT customer_id FROM devices WHERE device_id = $1)",
        device_id, leaderboard,
    )
    await conn.execute(
        "UPDATE consent_log SET leaderboard = $2"
        " WHERE id = (SELECT max(id) FROM consent_log WHERE device_id = $1)",
        device_id, leaderboard,
    )
    return await conn.fetchrow(
        f"SELECT {_DEVICE_COLUMNS} FROM devices WHERE device_id = $1", device_id)


async def delete_me(request: web.Request) -> web.Response:
    device_id = await require_device(request)
    from geopush.store.erasure import erase_device

    pool = request.app[RUNTIME].pool
    async with pool.acquire() as conn, conn.transaction():
        await erase_device(conn, device_id)
    return web.Response(status=204)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/devices", register),
        web.get("/v1/devices/me", get_me),
        web.patch("/v1/devices/me", patch_me),
        web.put("/v1/devices/me/consent", put_consent),
        web.delete("/v1/devices/me", delete_me),
    ]
