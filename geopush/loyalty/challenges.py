"""Challenges in the database (SPEC section 11): the cross-field rules and references a
challenge must pass, and its statements. Counting progress and completing challenges are
`loyalty.checkins` and `loyalty.purchases`; the HTTP side is `api/challenges.py`.
"""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

import asyncpg

from geopush.errors import Invalid, NotFound, Unprocessable
from geopush.store.keyset import Listing

FIELDS = ("name", "kind", "target", "starts_at", "ends_at", "store_ids", "reward_points",
          "offer_id")
COLUMNS = ("challenge_id, name, kind, target, starts_at, ends_at, store_ids, reward_points,"
           " offer_id, created_at, updated_at")
LISTING = Listing("challenges", COLUMNS, "challenge_id", condition="deleted_at IS NULL")


async def check_challenge(conn: asyncpg.Connection, values: dict[str, Any]) -> None:
    """Cross-field rules and references: a typo would make a challenge nobody can finish."""
    if values["ends_at"] <= values["starts_at"]:
        raise Invalid("ends_at", "must be later than starts_at")
    stores = values["store_ids"]
    if stores:
        known = {r[0] for r in await conn.fetch(
            "SELECT store_id FROM stores WHERE store_id = ANY($1::uuid[])", stores)}
        missing = [{"field": "store_ids", "id": str(s)} for s in stores if s not in known]
        if missing:
            raise Unprocessable("challenge names unknown stores", code="unknown_target",
                                details=missing)
    if values["offer_id"] is not None:
        trigger = await conn.fetchval(
            "SELECT trigger FROM offers WHERE offer_id = $1 AND deleted_at IS NULL",
            values["offer_id"])
        if trigger is None:
            raise Unprocessable("offer_id names no offer", code="unknown_offer",
                                details=[{"field": "offer_id", "id": str(values["offer_id"])}])
        if trigger != "reward":
            raise Unprocessable(
                f"offer_id must name an offer with trigger reward (it has {trigger})",
                code="invalid_offer", details=[{"field": "offer_id", "trigger": trigger}])


def _values(values: dict[str, Any]) -> list[Any]:
    return [values[name] for name in FIELDS]


async def create_challenge(conn: asyncpg.Connection, values: dict[str, Any]) -> asyncpg.Record:
    """Check and insert a challenge from every field of `FIELDS`."""
    await check_challenge(conn, values)
    row: asyncpg.Record = await conn.fetchrow(
        "INSERT INTO challenges (challenge_id, name, kind, target, starts_at, ends_at,"
        " store_ids, reward_points, offer_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        f" RETURNING {COLUMNS}", uuid.uuid4(), *_values(values))
    return row


async def challenge_row(conn: asyncpg.Connection | asyncpg.Pool, challenge_id: UUID, *,
                        lock: bool = False) -> asyncpg.Record:
    """A challenge not deleted; `NotFound` otherwise."""
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM challenges WHERE challenge_id = $1 AND deleted_at IS NULL"
        + (" FOR UPDATE" if lock else ""), challenge_id)
    if row is None:
        raise NotFound("challenge")
    return row


async def change_challenge(conn: asyncpg.Connection, challenge_id: UUID,
                           changes: dict[str, Any]) -> asyncpg.Record:
    """Apply `changes` over the stored fields, check the whole, and write it."""
    row = await challenge_row(conn, challenge_id, lock=True)
    values = {name: row[name] for name in FIELDS}
    values["store_ids"] = list(values["store_ids"])
    values.update(changes)
    await check_challenge(conn, values)
    new: asyncpg.Record = await conn.fetchrow(
        "UPDATE challenges SET name = $2, kind = $3, target = $4, starts_at = $5,"
        " ends_at = $6, store_ids = $7, reward_points = $8, offer_id = $9,"
        f" updated_at = now() WHERE challenge_id = $1 RETURNING {COLUMNS}",
        challenge_id, *_values(values))
    return new


async def delete_challenge(conn: asyncpg.Connection | asyncpg.Pool, challenge_id: UUID
                           ) -> None:
    """Soft delete: it stops counting at once; completions and rewards already given stay."""
    if not await conn.fetchval(
            "UPDATE challenges SET deleted_at = now() WHERE challenge_id = $1"
            " AND deleted_at IS NULL RETURNING true", challenge_id):
        raise NotFound("challenge")
