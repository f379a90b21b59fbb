"""A loyalty account as the app and the points desk see it (SPEC section 11): balance,
level, streak, badges, challenge progress and the ledger, and the one rule for changing a
balance by hand (adjustment or redemption, never below zero).

Balances are derived from the append-only ledger; a debit takes the customer's lock (the
one check-ins and decisions take) before it reads the balance, so two redemptions at once
can never take an account below zero.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from geopush.codes import LedgerReason
from geopush.errors import Conflict, Invalid, NotFound
from geopush.loyalty.levels import customer_known, subject_totals
from geopush.loyalty.rules import (
    current_streak,
    customer_subject,
    level_for,
    local_day,
    subject_of,
)
from geopush.outcomes import lock_customer
from geopush.timefmt import format_ts_or_none

LEDGER_PAGE = 50

_DAYS = """
SELECT DISTINCT local_day FROM loyalty_ledger
WHERE subject = $1 AND reason = 'checkin' AND local_day >= $2
"""
_BADGES = "SELECT code, earned_at FROM loyalty_badges WHERE subject = $1 ORDER BY earned_at, code"
# Live challenges and those the subject completed, with the subject's progress in each.
_CHALLENGES = """
SELECT c.challenge_id, c.name, c.target, x.completed_at,
       (SELECT CASE WHEN c.kind = 'distinct_stores' THEN count(DISTINCT l.store_id)
                    ELSE count(*) END
        FROM loyalty_ledger l
        WHERE l.subject = $1
          AND l.reason = CASE WHEN c.kind = 'purchases' THEN 'purchase' ELSE 'checkin' END
          AND l.ts >= c.starts_at AND l.ts < c.ends_at
          AND (c.store_ids = '{}' OR l.store_id = ANY(c.store_ids))) AS progress
FROM challenges c
LEFT JOIN challenge_completions x ON x.challenge_id = c.challenge_id AND x.subject = $1
WHERE c.deleted_at IS NULL
  AND ((c.starts_at <= $2 AND c.ends_at > $2) OR x.completed_at IS NOT NULL)
ORDER BY c.ends_at, c.challenge_id
LIMIT 100
"""
_LEDGER = """
SELECT id, ts, points, reason, ref, store_id, note FROM loyalty_ledger
WHERE subject = $1 AND ($2::bigint IS NULL OR id < $2)
ORDER BY subject, id DESC LIMIT $3
"""



def _iso(value: datetime | None) -> str | None:
    return format_ts_or_none(value)


def entry_json(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": row["id"], "ts": _iso(row["ts"]), "points": row["points"],
            "reason": row["reason"], "ref": row["ref"],
            "store_id": None if row["store_id"] is None else str(row["store_id"]),
            "note": row["note"]}


async def account_json(conn: Any, levels: dict[str, int], subject: str) -> dict[str, Any]:
    points, lifetime = await subject_totals(conn, subject)
    return {"points": points, "lifetime_points": lifetime, "level": level_for(lifetime, levels)}


async def customer_loyalty(pool: asyncpg.Pool, levels: dict[str, int], customer_id: str,
                           limit: int = LEDGER_PAGE) -> dict[str, Any]:
    """The block the customer profile shows: balance, level and the latest ledger rows."""
    subject = customer_subject(customer_id)
    out = await account_json(pool, levels, subject)
    out["ledger"] = [entry_json(r) for r in await pool.fetch(_LEDGER, subject, None, limit)]
    return out


async def device_loyalty(pool: asyncpg.Pool, levels: dict[str, int], device_id: UUID,
                         now: datetime) -> dict[str, Any]:
    """The device's (or its customer's) points, level, streak, badges and challenges."""
    async with pool.acquire() as conn:
        device = await conn.fetchrow(
            "SELECT customer_id, timezone FROM devices WHERE device_id = $1", device_id)
        subject = subject_of(device["customer_id"], device_id)
        out = await account_json(conn, levels, subject)
        today = local_day(now, device["timezone"])
        # A streak longer than ten years is not worth reading further back for.
        days = [r[0] for r in await conn.fetch(_DAYS, subject, today - timedelta(days=3660))]
        # Days are the stores' own: a store east of the phone may already be on tomorrow.
        out["streak_days"] = current_streak(days, max([today, *days]))
        out["badges"] = [{"code": r["code"], "earned_at": _iso(r["earned_at"])}
                         for r in await conn.fetch(_BADGES, subject)]
        out["challenges"] = [
            {"id": str(r["challenge_id"]), "name": r["name"],
             "progress": min(r["progress"], r["target"]), "target": r["target"],
             "completed_at": _iso(r["completed_at"])}
            for r in await conn.fetch(_CHALLENGES, subject, now)
        ]
    return out


async def _customer_exists(conn: asyncpg.Connection | asyncpg.Pool, customer_id: str) -> None:
    if not await customer_known(conn, customer_id):
        raise NotFound("customer")


async def customer_points(pool: asyncpg.Pool, levels: dict[str, int], customer_id: str,
                          before: int | None, limit: int) -> dict[str, Any]:
    """A customer's balance and level, and a page of the ledger, newest first."""
    subject = customer_subject(customer_id)
    async with pool.acquire() as conn:
        await _customer_exists(conn, customer_id)
        out = await account_json(conn, levels, subject)
        rows = await conn.fetch(_LEDGER, subject, before, limit + 1)
    items = [entry_json(r) for r in rows[:limit]]
    out.update(customer_id=customer_id, items=items,
               next_cursor=str(rows[limit - 1]["id"]) if len(rows) > limit else None)
    return out


async def change_points(pool: asyncpg.Pool, levels: dict[str, int], customer_id: str,
                        points: int, reason: str, note: str | None, now: datetime
                        ) -> dict[str, Any]:
    """A marketer's adjustment (either sign) or redemption (negative), never below zero:
    the new ledger entry and the account after it."""
    if points == 0:
        raise Invalid("points", "must not be 0")
    if reason == LedgerReason.REDEMPTION and points > 0:
        raise Invalid("points", "a redemption spends points: send a negative number")
    subject = customer_subject(customer_id)
    async with pool.acquire() as conn, conn.transaction():
        await _customer_exists(conn, customer_id)
        await lock_customer(conn, customer_id)
        balance, _ = await subject_totals(conn, subject)
        if balance + points < 0:
            raise Conflict(f"the balance is {balance} points; it cannot go below zero",
                           code="insufficient_points",
                           details=[{"balance": balance, "points": points}])
        row = await conn.fetchrow(
            "INSERT INTO loyalty_ledger (ts, points, reason, subject, customer_id, note)"
            " VALUES ($1, $2, $3, $4, $5, $6)"
            " RETURNING id, ts, points, reason, ref, store_id, note",
            now, points, reason, subject, customer_id, note,
        )
        out = await account_json(conn, levels, subject)
    out.update(customer_id=customer_id, entry=entry_json(row))
    return out
