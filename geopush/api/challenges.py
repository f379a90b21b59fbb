"""Challenges set by marketers (SPEC section 11): "5 check-ins this month", "3 stores".

A challenge counts a customer's check-ins, distinct stores or purchases between `starts_at`
and `ends_at` (at `store_ids` when set). Completing it credits `reward_points` and, with
`offer_id`, fires that offer (trigger `reward`) through the normal decision.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import asyncpg
from aiohttp import web
from pydantic import Field

from geopush.api.body import field_error, path_id, read_model
from geopush.api.openapi import BY_MARKETER, BY_STATS, PAGE, documented
from geopush.api.pagination import page, page_params
from geopush.api.runtime import RUNTIME
from geopush.api.schema import ABSENT, Chars, NonBlank, RequestBody, Time, WholeIn
from geopush.codes import ChallengeKind
from geopush.loyalty.challenges import (
    FIELDS,
    LISTING,
    challenge_row,
    change_challenge,
    create_challenge,
)
from geopush.loyalty.challenges import delete_challenge as remove_challenge
from geopush.store.keyset import fetch_page
from geopush.timefmt import format_ts_or_none

MAX_TARGET = 1_000_000
MAX_REWARD = 1_000_000
MAX_STORES = 1000
_FIELDS = FIELDS


class ChallengeCreate(RequestBody):
    """SPEC section 11; `id`, `created_at` and `updated_at` are accepted and ignored."""

    name: Annotated[str, NonBlank(200)]
    kind: Annotated[ChallengeKind, Field(strict=False)]
    target: Annotated[int, WholeIn(1, MAX_TARGET)]
    starts_at: Time
    ends_at: Time
    store_ids: list[Annotated[str, NonBlank(200)]] | None = None
    reward_points: Annotated[int, WholeIn(0, MAX_REWARD)] = 0
    offer_id: Annotated[str, NonBlank(200)] | None = None
    id: Annotated[str, Chars(100)] | None = None
    created_at: Annotated[str, Chars(100)] | None = None
    updated_at: Annotated[str, Chars(100)] | None = None


class ChallengePatch(ChallengeCreate):
    """Any of the fields; absent ones are unchanged."""

    name: Annotated[str, NonBlank(200)] = ABSENT
    kind: Annotated[ChallengeKind, Field(strict=False)] = ABSENT
    target: Annotated[int, WholeIn(1, MAX_TARGET)] = ABSENT
    starts_at: Time = ABSENT
    ends_at: Time = ABSENT


def _iso(value: datetime | None) -> str | None:
    return format_ts_or_none(value)


def challenge_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["challenge_id"]), "name": row["name"], "kind": row["kind"],
        "target": row["target"], "starts_at": _iso(row["starts_at"]),
        "ends_at": _iso(row["ends_at"]), "store_ids": [str(s) for s in row["store_ids"]],
        "reward_points": row["reward_points"],
        "offer_id": None if row["offer_id"] is None else str(row["offer_id"]),
        "created_at": _iso(row["created_at"]), "updated_at": _iso(row["updated_at"]),
    }


def _uuid(value: str, field: str, what: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise field_error(field, f"must be {what} id") from None


def parse_fields(given: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    """The columns a validated POST or PATCH body sets (read-only fields dropped)."""
    out = {k: v for k, v in given.items() if k in _FIELDS}
    if "kind" in out:
        out["kind"] = str(out["kind"])
    if "store_ids" in out:
        ids = out["store_ids"] or []
        if len(ids) > MAX_STORES:
            raise field_error("store_ids", f"at most {MAX_STORES} stores")
        out["store_ids"] = sorted({_uuid(v, f"store_ids.{i}", "a store")
                                   for i, v in enumerate(ids)})
    if out.get("offer_id") is not None:
        out["offer_id"] = _uuid(out["offer_id"], "offer_id", "an offer")
    if not partial:
        out.setdefault("store_ids", [])
        out.setdefault("reward_points", 0)
        out.setdefault("offer_id", None)
    for name in ("name", "kind", "target", "starts_at", "ends_at", "reward_points"):
        if name in out and out[name] is None:
            raise field_error(name, "must not be null")
    return out


@documented("Create a loyalty challenge", auth=BY_MARKETER, body=ChallengeCreate, status=201,
            errors=(422,), tag="loyalty")
async def post_challenge(request: web.Request) -> web.Response:
    values = parse_fields((await read_model(request, ChallengeCreate)).given(), partial=False)
    async with request.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        row = await create_challenge(conn, values)
    return web.json_response(challenge_json(row), status=201)


@documented("List loyalty challenges", auth=BY_STATS, query=PAGE, tag="loyalty")
async def list_challenges(request: web.Request) -> web.Response:
    limit, cursor = page_params(request)
    rows = await fetch_page(request.app[RUNTIME].pool, LISTING, limit, cursor)
    return web.json_response(page([challenge_json(r) for r in rows], rows, limit,
                                  "challenge_id"))


@documented("One loyalty challenge", auth=BY_STATS, tag="loyalty")
async def get_challenge(request: web.Request) -> web.Response:
    row = await challenge_row(request.app[RUNTIME].pool,
                              path_id(request, "challenge_id", "challenge"))
    return web.json_response(challenge_json(row))


@documented("Change a loyalty challenge", auth=BY_MARKETER, body=ChallengePatch, errors=(422,),
            tag="loyalty")
async def patch_challenge(request: web.Request) -> web.Response:
    challenge_id = path_id(request, "challenge_id", "challenge")
    changes = parse_fields((await read_model(request, ChallengePatch)).given(), partial=True)
    async with request.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        row = await change_challenge(conn, challenge_id, changes)
    return web.json_response(challenge_json(row))


@documented("Delete a loyalty challenge (completions stay)", auth=BY_MARKETER, status=204,
            media=None, tag="loyalty")
async def delete_challenge(request: web.Request) -> web.Response:
    """Soft delete: it stops counting at once; completions and rewards already given stay."""
    await remove_challenge(request.app[RUNTIME].pool,
                           path_id(request, "challenge_id", "challenge"))
    return web.Response(status=204)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/challenges", post_challenge),
        web.get("/v1/challenges", list_challenges),
        web.get("/v1/challenges/{challenge_id}", get_challenge),
        web.patch("/v1/challenges/{challenge_id}", patch_challenge),
        web.delete("/v1/challenges/{challenge_id}", delete_challenge),
    ]
