"""Loyalty (SPEC section 11): the app's view, leaderboards, and marketers' points desk.

Balances are derived from the append-only ledger; a debit takes the customer's lock (the
one check-ins and decisions take) before it reads the balance, so two redemptions at once
can never take an account below zero.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from time import monotonic
from typing import Any, Literal
from uuid import UUID

import asyncpg
from aiohttp import web

from geopush import metrics
from geopush.api.auth import require_device
from geopush.api.body import field_error, query_int, read_model
from geopush.api.errors import ApiError, not_found
from geopush.api.openapi import (
    BY_DEVICE,
    BY_MARKETER,
    BY_STATS,
    PAGE,
    STORE_ID,
    Query,
    documented,
    int_query,
)
from geopush.api.runtime import RUNTIME
from geopush.api.schema import RequestBody, Text, Whole
from geopush.api.token_buckets import retry_after
from geopush.campaigns.decide import zone
from geopush.codes import LedgerReason
from geopush.loyalty.leaderboard import MAX_SHOWN, standing
from geopush.loyalty.levels import customer_known, subject_totals
from geopush.loyalty.rules import (
    current_streak,
    customer_subject,
    display_name,
    level_for,
    local_day,
    subject_of,
)
from geopush.outcomes import lock_customer
from geopush.timefmt import format_ts_or_none

MAX_POINTS = 1_000_000


class PointsChange(RequestBody):
    """A marketer's adjustment (either sign) or redemption (negative): SPEC section 11."""

    points: Whole(-MAX_POINTS, MAX_POINTS)  # type: ignore[valid-type]
    reason: Literal["adjustment", "redemption"]
    note: Text(500) | None = None  # type: ignore[valid-type]

LEADERBOARD_SIZE = 20
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


@documented("The device's points, level, streak, badges and challenges", auth=BY_DEVICE,
            tag="loyalty")
async def get_my_loyalty(request: web.Request) -> web.Response:
    device_id = await require_device(request)
    rt = request.app[RUNTIME]
    now = rt.now()
    async with rt.pool.acquire() as conn:
        device = await conn.fetchrow(
            "SELECT customer_id, timezone FROM devices WHERE device_id = $1", device_id)
        subject = subject_of(device["customer_id"], device_id)
        out = await account_json(conn, rt.config.loyalty.levels, subject)
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
    return web.json_response(out)


# --- leaderboards ---------------------------------------------------------------------------

def period_bounds(period: str, now: datetime, tz: str | None) -> tuple[datetime, datetime]:
    """This calendar week (from Monday) or month, in the caller's time zone, as UTC."""
    here = zone(tz)
    today = now.astimezone(here).date()
    if period == "week":
        start = today - timedelta(days=today.weekday())
        end = start + timedelta(days=7)
    else:
        start = today.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)

    def instant(d: date) -> datetime:
        return datetime.combine(d, time(0), tzinfo=here).astimezone(UTC)

    return instant(start), instant(end)


@documented("Leaderboard of opted-in customers, with the caller's own rank", auth=BY_DEVICE,
            query=(Query("period", {"type": "string", "enum": ["week", "month"]},
                         "This calendar week (default) or month, in the device's zone."),
                   STORE_ID, int_query("limit", 1, 100)), errors=(429,), tag="loyalty")
async def get_leaderboard(request: web.Request) -> web.Response:
    device_id = await require_device(request)
    rt = request.app[RUNTIME]
    period = request.query.get("period", "week")
    if period not in ("week", "month"):
        raise field_error("period", "must be week or month")
    store_raw = request.query.get("store_id") or None
    store_id = None
    if store_raw is not None:
        try:
            store_id = UUID(store_raw)
        except ValueError:
            raise field_error("store_id", "must be a store id") from None
    limit = query_int(request, "limit", LEADERBOARD_SIZE, 1, MAX_SHOWN)
    wait = rt.leaderboard_rate.take(device_id, monotonic())
    if wait > 0:
        raise ApiError(429, "rate_limited", "too many leaderboard reads for this device",
                       headers={"Retry-After": retry_after(wait)})
    device = await rt.pool.fetchrow(
        "SELECT customer_id, timezone FROM devices WHERE device_id = $1", device_id)
    start, end = period_bounds(period, rt.now(), device["timezone"])
    key = (period, start, end, store_id)
    board = await rt.leaderboards.board(rt.pool, key)
    me = await standing(rt.pool, board, subject_of(device["customer_id"], device_id), key,
                        limit)
    items = [
        {"rank": rank, "name": display_name(e.first_name, e.last_initial),
         "points": e.points, "me": e.customer_id == device["customer_id"]}
        for rank, e in me.items
    ]
    return web.json_response({
        "period": period, "from": _iso(start), "to": _iso(end),
        "store_id": None if store_id is None else str(store_id),
        "items": items,
        "me": {"rank": me.my_rank, "points": me.my_points,
               "listed": any(i["me"] for i in items)},
    })


# --- marketers: a customer's points ----------------------------------------------------------


async def _customer_exists(conn: Any, customer_id: str) -> None:
    if not await customer_known(conn, customer_id):
        raise not_found("customer")


@documented("A customer's points, level and ledger", auth=BY_MARKETER, query=PAGE,
            tag="loyalty")
async def get_customer_points(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    customer_id = request.match_info["customer_id"]
    limit = query_int(request, "limit", LEDGER_PAGE, 1, 500)
    raw = request.query.get("cursor")
    try:
        before = int(raw) if raw else None
    except ValueError:
        raise field_error("cursor", "is not a cursor this server gave") from None
    subject = customer_subject(customer_id)
    async with rt.pool.acquire() as conn:
        await _customer_exists(conn, customer_id)
        out = await account_json(conn, rt.config.loyalty.levels, subject)
        rows = await conn.fetch(_LEDGER, subject, before, limit + 1)
    items = [entry_json(r) for r in rows[:limit]]
    out.update(customer_id=customer_id, items=items,
               next_cursor=str(rows[limit - 1]["id"]) if len(rows) > limit else None)
    return web.json_response(out)


@documented("Adjust or redeem a customer's points (never below zero)", auth=BY_MARKETER,
            body=PointsChange, status=201, errors=(409,), tag="loyalty")
async def post_customer_points(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    customer_id = request.match_info["customer_id"]
    body = await read_model(request, PointsChange)
    points, reason, note = body.points, body.reason, body.note
    if points == 0:
        raise field_error("points", "must not be 0")
    if reason == LedgerReason.REDEMPTION and points > 0:
        raise field_error("points", "a redemption spends points: send a negative number")
    subject = customer_subject(customer_id)
    async with rt.pool.acquire() as conn, conn.transaction():
        await _customer_exists(conn, customer_id)
        await lock_customer(conn, customer_id)
        balance, _ = await subject_totals(conn, subject)
        if balance + points < 0:
            raise ApiError(409, "insufficient_points",
                           f"the balance is {balance} points; it cannot go below zero",
                           [{"balance": balance, "points": points}])
        row = await conn.fetchrow(
            "INSERT INTO loyalty_ledger (ts, points, reason, subject, customer_id, note)"
            " VALUES ($1, $2, $3, $4, $5, $6)"
            " RETURNING id, ts, points, reason, ref, store_id, note",
            rt.now(), points, reason, subject, customer_id, note,
        )
        out = await account_json(conn, rt.config.loyalty.levels, subject)
    metrics.LOYALTY_POINTS.labels(reason).inc(abs(points))
    out.update(customer_id=customer_id, entry=entry_json(row))
    return web.json_response(out, status=201)


# --- the program's totals, for the dashboard and the console ----------------------------------

_SUMMARY_POINTS = """
SELECT reason, count(*) AS entries, coalesce(sum(points), 0)::bigint AS points
FROM loyalty_ledger WHERE ts >= $1 GROUP BY reason
"""
_SUMMARY_BADGES = """
SELECT code, count(*) AS n FROM loyalty_badges WHERE earned_at >= $1 GROUP BY code
"""
_SUMMARY_CHALLENGES = """
SELECT c.challenge_id, c.name, c.kind, c.target, c.starts_at, c.ends_at,
       (SELECT count(*) FROM challenge_completions x WHERE x.challenge_id = c.challenge_id)
           AS completed
FROM challenges c WHERE c.deleted_at IS NULL ORDER BY c.ends_at DESC LIMIT 100
"""
_SUMMARY_LEVELS = """
SELECT lifetime FROM (
    SELECT coalesce(sum(points) FILTER (WHERE reason <> 'redemption'), 0) AS lifetime
    FROM loyalty_ledger WHERE subject IS NOT NULL GROUP BY subject
) s
"""


@documented("Loyalty totals: points, badges, challenges, members per level", auth=BY_STATS,
            query=(int_query("days", 1, 3660),), tag="loyalty")
async def get_summary(request: web.Request) -> web.Response:
    """Totals of the program: points by reason, badges, challenges, members per level."""
    rt = request.app[RUNTIME]
    days = query_int(request, "days", 30, 1, 3660)
    since = rt.now() - timedelta(days=days)
    levels = rt.config.loyalty.levels
    async with rt.pool.acquire() as conn, conn.transaction(readonly=True,
                                                           isolation="repeatable_read"):
        await conn.execute("SET LOCAL statement_timeout = '10s'")
        points = {r["reason"]: {"entries": r["entries"], "points": r["points"]}
                  for r in await conn.fetch(_SUMMARY_POINTS, since)}
        badges = {r["code"]: r["n"] for r in await conn.fetch(_SUMMARY_BADGES, since)}
        challenges = await conn.fetch(_SUMMARY_CHALLENGES)
        members = {name: 0 for name in levels}
        for r in await conn.fetch(_SUMMARY_LEVELS):
            members[level_for(int(r["lifetime"]), levels)] += 1
    return web.json_response({
        "days": days, "since": _iso(since),
        "points": points,
        "earned": sum(v["points"] for k, v in points.items()
                      if k in ("checkin", "purchase", "challenge", "badge")),
        "redeemed": -sum(v["points"] for k, v in points.items() if k == "redemption"),
        "checkins": points.get("checkin", {}).get("entries", 0),
        "badges": badges,
        "members_by_level": members,
        "challenges": [
            {"id": str(r["challenge_id"]), "name": r["name"], "kind": r["kind"],
             "target": r["target"], "starts_at": _iso(r["starts_at"]),
             "ends_at": _iso(r["ends_at"]), "completed": r["completed"]}
            for r in challenges
        ],
    })


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1/devices/me/loyalty", get_my_loyalty),
        web.get("/v1/leaderboard", get_leaderboard),
        web.get("/v1/customers/{customer_id}/points", get_customer_points),
        web.post("/v1/customers/{customer_id}/points", post_customer_points),
        web.get("/v1/loyalty/summary", get_summary),
    ]
