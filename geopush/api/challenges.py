"""Challenges set by marketers (SPEC section 11): "5 check-ins this month", "3 stores".

A challenge counts a customer's check-ins, distinct stores or purchases between `starts_at`
and `ends_at` (at `store_ids` when set). Completing it credits `reward_points` and, with
`offer_id`, fires that offer (trigger `reward`) through the normal decision.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
from aiohttp import web

from geopush.api.auth import MARKETER, STATS, require_role
from geopush.api.body import field_error, get_number, get_str, parse_time, path_id, read_object
from geopush.api.errors import ApiError, not_found
from geopush.api.pagination import page, page_params
from geopush.codes import ChallengeKind
from geopush.runtime import RUNTIME

MAX_TARGET = 1_000_000
MAX_REWARD = 1_000_000
MAX_STORES = 1000
_FIELDS = ("name", "kind", "target", "starts_at", "ends_at", "store_ids", "reward_points",
           "offer_id")
_READ_ONLY = ("id", "created_at", "updated_at")
_COLUMNS = ("challenge_id, name, kind, target, starts_at, ends_at, store_ids, reward_points,"
            " offer_id, created_at, updated_at")


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def challenge_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["challenge_id"]), "name": row["name"], "kind": row["kind"],
        "target": row["target"], "starts_at": _iso(row["starts_at"]),
        "ends_at": _iso(row["ends_at"]), "store_ids": [str(s) for s in row["store_ids"]],
        "reward_points": row["reward_points"],
        "offer_id": None if row["offer_id"] is None else str(row["offer_id"]),
        "created_at": _iso(row["created_at"]), "updated_at": _iso(row["updated_at"]),
    }


def parse_fields(body: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    """The columns a POST (all required but store_ids, reward_points, offer_id) or PATCH sets."""
    unknown = sorted(set(body) - set(_FIELDS) - set(_READ_ONLY))
    if unknown:
        raise field_error(unknown[0], "unknown field")
    out: dict[str, Any] = {}

    def wanted(name: str, required: bool) -> bool:
        if name in body:
            return True
        if required and not partial:
            raise field_error(name, "is required")
        return False

    if wanted("name", True):
        out["name"] = get_str(body, "name", required=True, max_len=200)
    if wanted("kind", True):
        kind = body["kind"]
        if kind not in {k.value for k in ChallengeKind}:
            raise field_error("kind", "must be checkins, distinct_stores or purchases")
        out["kind"] = kind
    if wanted("target", True):
        out["target"] = get_number(body, "target", required=True, integer=True, lo=1,
                                   hi=MAX_TARGET)
    for name in ("starts_at", "ends_at"):
        if wanted(name, True):
            out[name] = parse_time(body[name], name)
    if wanted("store_ids", False):
        ids = body["store_ids"]
        if ids is None:
            ids = []
        if not isinstance(ids, list) or len(ids) > MAX_STORES:
            raise field_error("store_ids", f"must be a list of at most {MAX_STORES} store ids")
        parsed: list[UUID] = []
        for i, value in enumerate(ids):
            try:
                parsed.append(UUID(value))
            except (ValueError, TypeError, AttributeError):
                raise field_error(f"store_ids[{i}]", "must be a store id") from None
        out["store_ids"] = sorted(set(parsed))
    if wanted("reward_points", False):
        out["reward_points"] = get_number(body, "reward_points", required=True, integer=True,
                                          lo=0, hi=MAX_REWARD)
    if wanted("offer_id", False):
        raw = body["offer_id"]
        try:
            out["offer_id"] = None if raw is None else UUID(raw)
        except (ValueError, TypeError, AttributeError):
            raise field_error("offer_id", "must be an offer id or null") from None
    if not partial:
        out.setdefault("store_ids", [])
        out.setdefault("reward_points", 0)
        out.setdefault("offer_id", None)
    return out


async def _check(conn: asyncpg.Connection, values: dict[str, Any]) -> None:
    """Cross-field rules and references: a typo would make a challenge nobody can finish."""
    if values["ends_at"] <= values["starts_at"]:
        raise field_error("ends_at", "must be later than starts_at")
    stores = values["store_ids"]
    if stores:
        known = {r[0] for r in await conn.fetch(
            "SELECT store_id FROM stores WHERE store_id = ANY($1::uuid[])", stores)}
        missing = [{"field": "store_ids", "id": str(s)} for s in stores if s not in known]
        if missing:
            raise ApiError(422, "unknown_target", "challenge names unknown stores", missing)
    if values["offer_id"] is not None:
        trigger = await conn.fetchval(
            "SELECT trigger FROM offers WHERE offer_id = $1 AND deleted_at IS NULL",
            values["offer_id"])
        if trigger is None:
            raise ApiError(422, "unknown_offer", "offer_id names no offer",
                           [{"field": "offer_id", "id": str(values["offer_id"])}])
        if trigger != "reward":
            raise ApiError(422, "invalid_offer",
                           f"offer_id must name an offer with trigger reward (it has {trigger})",
                           [{"field": "offer_id", "trigger": trigger}])


async def post_challenge(request: web.Request) -> web.Response:
    await require_role(request, *MARKETER)
    values = parse_fields(await read_object(request), partial=False)
    async with request.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        await _check(conn, values)
        row = await conn.fetchrow(
            "INSERT INTO challenges (challenge_id, name, kind, target, starts_at, ends_at,"
            " store_ids, reward_points, offer_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            f" RETURNING {_COLUMNS}",
            uuid.uuid4(), values["name"], values["kind"], values["target"], values["starts_at"],
            values["ends_at"], values["store_ids"], values["reward_points"], values["offer_id"],
        )
    return web.json_response(challenge_json(row), status=201)


async def list_challenges(request: web.Request) -> web.Response:
    await require_role(request, *STATS)
    limit, cursor = page_params(request)
    args: list[Any] = [limit + 1]
    condition = "deleted_at IS NULL"
    if cursor:
        args += list(cursor)
        condition += " AND (created_at, challenge_id) > ($2, $3)"
    rows = await request.app[RUNTIME].pool.fetch(
        f"SELECT {_COLUMNS} FROM challenges WHERE {condition}"
        " ORDER BY created_at, challenge_id LIMIT $1", *args)
    return web.json_response(page([challenge_json(r) for r in rows], rows, limit,
                                  "challenge_id"))


async def get_challenge(request: web.Request) -> web.Response:
    await require_role(request, *STATS)
    row = await request.app[RUNTIME].pool.fetchrow(
        f"SELECT {_COLUMNS} FROM challenges WHERE challenge_id = $1 AND deleted_at IS NULL",
        path_id(request, "challenge_id", "challenge"))
    if row is None:
        raise not_found("challenge")
    return web.json_response(challenge_json(row))


async def patch_challenge(request: web.Request) -> web.Response:
    await require_role(request, *MARKETER)
    challenge_id = path_id(request, "challenge_id", "challenge")
    changes = parse_fields(await read_object(request), partial=True)
    async with request.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM challenges WHERE challenge_id = $1 AND deleted_at IS NULL"
            " FOR UPDATE", challenge_id)
        if row is None:
            raise not_found("challenge")
        values = {name: row[name] for name in _FIELDS}
        values["store_ids"] = list(values["store_ids"])
        values.update(changes)
        await _check(conn, values)
        row = await conn.fetchrow(
            "UPDATE challenges SET name = $2, kind = $3, target = $4, starts_at = $5,"
            " ends_at = $6, store_ids = $7, reward_points = $8, offer_id = $9,"
            f" updated_at = now() WHERE challenge_id = $1 RETURNING {_COLUMNS}",
            challenge_id, values["name"], values["kind"], values["target"], values["starts_at"],
            values["ends_at"], values["store_ids"], values["reward_points"], values["offer_id"],
        )
    return web.json_response(challenge_json(row))


async def delete_challenge(request: web.Request) -> web.Response:
    """Soft delete: it stops counting at once; completions and rewards already given stay."""
    await require_role(request, *MARKETER)
    deleted = await request.app[RUNTIME].pool.fetchval(
        "UPDATE challenges SET deleted_at = now() WHERE challenge_id = $1"
        " AND deleted_at IS NULL RETURNING true",
        path_id(request, "challenge_id", "challenge"))
    if not deleted:
        raise not_found("challenge")
    return web.Response(status=204)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/challenges", post_challenge),
        web.get("/v1/challenges", list_challenges),
        web.get("/v1/challenges/{challenge_id}", get_challenge),
        web.patch("/v1/challenges/{challenge_id}", patch_challenge),
        web.delete("/v1/challenges/{challenge_id}", delete_challenge),
    ]
