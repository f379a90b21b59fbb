"""Basket analysis for marketers (SPEC section 12): association rules, cross-sell audiences,
up-selling figures, and a recompute of the rules the decisions use.

Mining runs in a child process (`MiningPool`): a marketer's query never holds the event
loop that ingest shares.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from aiohttp import web

from geopush.api.body import field_error, parse_time, query_int
from geopush.api.openapi import BY_MARKETER, SINCE, STORE_ID, Query, documented, int_query
from geopush.api.runtime import RUNTIME
from geopush.insights.audiences import cross_sell_audiences, stored_rules, upsell
from geopush.insights.basket_data import LEVELS
from geopush.insights.basket_rules import configured_params, lookback_start, mine_job
from geopush.insights.rules import Rule, RuleParams
from geopush.store.value import GROUPINGS, customer_value
from geopush.timefmt import format_ts

#: Most rules one answer lists (best lift first); `truncated` tells when more passed.
MAX_RULES = 10_000
DEFAULT_RULES = 1000


BASKET_QUERY = (
    Query("level", {"enum": ["category", "product"]}),
    *(Query(name, {"type": "number", "minimum": 0}) for name in
      ("min_support", "min_confidence", "min_lift")),
    int_query("max_len", 2, 6), STORE_ID, SINCE, int_query("limit", 1, MAX_RULES),
)


def _query_float(request: web.Request, key: str, default: float, lo: float, hi: float,
                 *, open_low: bool = False) -> float:
    raw = request.query.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise field_error(key, "must be a number") from None
    if not (lo < value if open_low else lo <= value) or not value <= hi:
        low = f"above {lo:g}" if open_low else f"at least {lo:g}"
        raise field_error(key, f"must be {low} and at most {hi:g}")
    return value


def _query_store(request: web.Request) -> UUID | None:
    raw = request.query.get("store_id")
    if not raw:
        return None
    try:
        return UUID(raw)
    except ValueError:
        raise field_error("store_id", "must be a store id") from None


def _query_since(request: web.Request, default: datetime) -> datetime:
    raw = request.query.get("since")
    return default if not raw else parse_time(raw, "since")


async def _query(request: web.Request, level: str, params: RuleParams, since: datetime,
                 store_id: UUID | None) -> tuple[int, list[Rule]]:
    """Mine in the query lane: stopped if the client hangs up, 429 when the lane is full."""
    rt = request.app[RUNTIME]

    def abandoned() -> bool:
        transport = request.transport
        return transport is None or transport.is_closing()

    return await rt.miner.query(mine_job, rt.database_url, level, params, since, store_id,
                                rt.config.insights.max_itemsets, abandoned=abandoned)


@documented("Association rules over baskets", auth=BY_MARKETER, query=BASKET_QUERY,
            errors=(429,))
async def get_basket_rules(request: web.Request) -> web.Response:
    """`GET /v1/insights/basket`: rules mined now over the baskets asked for."""
    rt = request.app[RUNTIME]
    level = request.query.get("level", "category")
    if level not in LEVELS:
        raise field_error("level", "must be category or product")
    defaults = RuleParams()
    params = RuleParams(
        min_support=_query_float(request, "min_support", defaults.min_support, 0, 1,
                                 open_low=True),
        min_confidence=_query_float(request, "min_confidence", defaults.min_confidence, 0, 1),
        min_lift=_query_float(request, "min_lift", defaults.min_lift, 0, 1e9),
        max_len=query_int(request, "max_len", defaults.max_len, 2, 6),
    )
    limit = query_int(request, "limit", DEFAULT_RULES, 1, MAX_RULES)
    store_id = _query_store(request)
    since = _query_since(request, lookback_start(rt.config, rt.now()))
    n, rules = await _query(request, level, params, since, store_id)
    return web.json_response({
        "baskets": n, "level": level, "since": format_ts(since), "store_id":
        None if store_id is None else str(store_id), **params.as_json(),
        "rules": [r.as_json() for r in rules[:limit]], "truncated": len(rules) > limit,
    })


@documented("Cross-selling audiences of the top rules", auth=BY_MARKETER,
            query=(STORE_ID, int_query("limit", 1, 100)))
async def get_cross_sell(request: web.Request) -> web.Response:
    """`GET /v1/insights/cross-sell`: the best single-consequent rules and their audiences.

    Without `store_id` the rules are the background run's (the ones recommendations use);
    with it, they are mined now over that store's baskets with the same thresholds. The
    audience is over every purchase, as an offer's audience check reads it.
    """
    rt = request.app[RUNTIME]
    limit = query_int(request, "limit", rt.config.insights.cross_sell_rules, 1, 100)
    store_id = _query_store(request)
    since = lookback_start(rt.config, rt.now())
    run: dict[str, Any] | None
    if store_id is None:
        run, rules = await stored_rules(rt.pool, limit)
        answer: dict[str, Any] = {
            "computed_at": None if run is None else format_ts(run["computed_at"]),
            "baskets": None if run is None else run["baskets"],
        }
    else:
        n, mined = await _query(request, "category", configured_params(rt.config), since,
                                store_id)
        rules = [r for r in mined if len(r.consequent) == 1][:limit]
        answer = {"computed_at": format_ts(rt.now()), "baskets": n}
    answer.update(store_id=None if store_id is None else str(store_id),
                  lookback_days=rt.config.segments.lookback_days,
                  rules=await cross_sell_audiences(rt.pool, rules, since))
    return web.json_response(answer)


@documented("Average baskets per FRAT segment and category", auth=BY_MARKETER,
            query=(STORE_ID, SINCE))
async def get_upsell(request: web.Request) -> web.Response:
    """`GET /v1/insights/upsell`: average baskets per FRAT segment, per category."""
    rt = request.app[RUNTIME]
    since = _query_since(request, lookback_start(rt.config, rt.now()))
    return web.json_response(await upsell(rt.pool, since, _query_store(request)))


@documented("Customer value on the three levers, per segment or store", auth=BY_MARKETER,
            query=(Query("by", {"enum": list(GROUPINGS)}, "segment (default) or store"),))
async def get_value(request: web.Request) -> web.Response:
    """`GET /v1/insights/value?by=segment|store` (SPEC section 15): frequency × basket ×
    relationship length, per group, best value first."""
    rt = request.app[RUNTIME]
    by = request.query.get("by", "segment")
    if by not in GROUPINGS:
        raise field_error("by", "must be segment or store")
    lookback = rt.config.segments.lookback_days
    items = await customer_value(rt.pool, "store" if by == "store" else "segment", rt.now(),
                                 lookback)
    return web.json_response({"by": by, "lookback_days": lookback, "items": items})


@documented("Mine the rules the decisions use, now", auth=BY_MARKETER)
async def post_recompute(request: web.Request) -> web.Response:
    """`POST /v1/insights/recompute`: mine the rules the decisions use now; the summary."""
    return web.json_response(await request.app[RUNTIME].rules.recompute())


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1/insights/basket", get_basket_rules),
        web.get("/v1/insights/cross-sell", get_cross_sell),
        web.get("/v1/insights/upsell", get_upsell),
        web.post("/v1/insights/recompute", post_recompute),
        web.get("/v1/insights/value", get_value),
    ]
