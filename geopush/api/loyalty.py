"""Loyalty (SPEC section 11): the app's view, leaderboards, and marketers' points desk.

The HTTP side only: accounts and the points rule are in `geopush.loyalty.accounts`, the
leaderboards in `geopush.loyalty.leaderboard`, the totals in `geopush.loyalty.summary`.
"""

from __future__ import annotations

from datetime import timedelta
from time import monotonic
from typing import Annotated, Literal
from uuid import UUID

from aiohttp import web

from geopush import metrics
from geopush.api.auth import require_device
from geopush.api.body import field_error, query_int, read_model
from geopush.api.errors import ApiError
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
from geopush.api.schema import Chars, RequestBody, WholeIn
from geopush.api.token_buckets import retry_after
from geopush.loyalty.accounts import (
    LEDGER_PAGE,
    change_points,
    customer_points,
    device_loyalty,
)
from geopush.loyalty.leaderboard import MAX_SHOWN, device_leaderboard
from geopush.loyalty.summary import program_summary

MAX_POINTS = 1_000_000


class PointsChange(RequestBody):
    """A marketer's adjustment (either sign) or redemption (negative): SPEC section 11."""

    points: Annotated[int, WholeIn(-MAX_POINTS, MAX_POINTS)]
    reason: Literal["adjustment", "redemption"]
    note: Annotated[str, Chars(500)] | None = None


LEADERBOARD_SIZE = 20


@documented("The device's points, level, streak, badges and challenges", auth=BY_DEVICE,
            tag="loyalty")
async def get_my_loyalty(request: web.Request) -> web.Response:
    device_id = await require_device(request)
    rt = request.app[RUNTIME]
    return web.json_response(await device_loyalty(rt.pool, rt.config.loyalty.levels,
                                                  device_id, rt.now()))


# --- leaderboards ---------------------------------------------------------------------------

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
    return web.json_response(await device_leaderboard(
        rt.pool, rt.leaderboards, device_id, period, store_id, limit, rt.now()))


# --- marketers: a customer's points ----------------------------------------------------------


@documented("A customer's points, level and ledger", auth=BY_MARKETER, query=PAGE,
            tag="loyalty")
async def get_customer_points(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    limit = query_int(request, "limit", LEDGER_PAGE, 1, 500)
    raw = request.query.get("cursor")
    try:
        before = int(raw) if raw else None
    except ValueError:
        raise field_error("cursor", "is not a cursor this server gave") from None
    return web.json_response(await customer_points(
        rt.pool, rt.config.loyalty.levels, request.match_info["customer_id"], before, limit))


@documented("Adjust or redeem a customer's points (never below zero)", auth=BY_MARKETER,
            body=PointsChange, status=201, errors=(409,), tag="loyalty")
async def post_customer_points(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    body = await read_model(request, PointsChange)
    out = await change_points(rt.pool, rt.config.loyalty.levels,
                              request.match_info["customer_id"], body.points, body.reason,
                              body.note, rt.now())
    metrics.LOYALTY_POINTS.labels(body.reason).inc(abs(body.points))
    return web.json_response(out, status=201)


# --- the program's totals, for the dashboard and the console ----------------------------------

@documented("Loyalty totals: points, badges, challenges, members per level", auth=BY_STATS,
            query=(int_query("days", 1, 3660),), tag="loyalty")
async def get_summary(request: web.Request) -> web.Response:
    """Totals of the program: points by reason, badges, challenges, members per level."""
    rt = request.app[RUNTIME]
    days = query_int(request, "days", 30, 1, 3660)
    since = rt.now() - timedelta(days=days)
    return web.json_response({"days": days, **await program_summary(
        rt.pool, rt.config.loyalty.levels, since)})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1/devices/me/loyalty", get_my_loyalty),
        web.get("/v1/leaderboard", get_leaderboard),
        web.get("/v1/customers/{customer_id}/points", get_customer_points),
        web.post("/v1/customers/{customer_id}/points", post_customer_points),
        web.get("/v1/loyalty/summary", get_summary),
    ]
