"""CRM: customer and transaction imports, customer profiles and erasure, FRAT segments.

Imports take the CSV as the request body (`Content-Type: text/csv`), bounded by `[limits]
max_import_bytes` (not `max_body_bytes`). The body is spooled to a temporary file first
(see api/spool.py), never held in memory, and only then imported from that file: no
database connection waits on a slow client. At most `[limits] max_concurrent_imports` run
at once (api/import_slots.py).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from geopush.api.errors import ApiError, not_found
from geopush.api.import_slots import running_import
from geopush.api.openapi import BY_MARKETER, CSV_BODY, documented
from geopush.api.runtime import RUNTIME
from geopush.api.spool import spooled_body
from geopush.crm.customers import customer_row
from geopush.crm.imports import import_stream
from geopush.crm.segments import recompute_segments, segment_summary
from geopush.loyalty.accounts import customer_loyalty
from geopush.store.erasure import erase_customer
from geopush.store.preferences import read_preferences, subject_of
from geopush.timefmt import format_ts_or_none

CSV_TYPES = frozenset({"text/csv", "application/csv", "text/plain"})

def _iso(value: Any) -> str | None:
    return format_ts_or_none(value)


def profile_json(row: Any) -> dict[str, Any]:
    """A customer as marketers see them: who, and where FRAT puts them (SPEC section 5).

    r, f, a and recency_days are null without a transaction in the lookback; `types` is
    the number of distinct categories bought in it, `categories` those categories.
    """
    recency = row["recency_days"]
    return {
        "customer_id": row["customer_id"],
        "first_name": row["first_name"],
        "language": row["language"],
        "created_at": _iso(row["created_at"]),
        "segment": row["segment"],
        "r": row["r_score"],
        "f": row["f_score"],
        "a": row["a_score"],
        "recency_days": None if recency is None else int(recency),
        "frequency": row["frequency"],
        "amount": float(row["amount"]),
        "types": len(row["types"]),
        "categories": sorted(row["types"]),
        "segment_computed_at": _iso(row["segment_computed_at"]),
        "imported_at": _iso(row["imported_at"]),
        "devices": row["devices"],
        # Best first, as the last basket-rules run computed them (SPEC section 12).
        "recommended_categories": list(row["recommended_categories"] or []),
    }


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large",
                    f"import larger than [limits] max_import_bytes ({limit} bytes)")


async def _import(request: web.Request, kind: str) -> web.Response:
    if request.content_type not in CSV_TYPES:
        raise ApiError(415, "unsupported_media_type",
                       f"send the CSV file as the body with Content-Type: text/csv"
                       f" (got {request.content_type})")
    rt = request.app[RUNTIME]
    limit = rt.config.limits.max_import_bytes
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    with running_import(request):
        async with spooled_body(request, limit,
                                what="import ([limits] max_import_bytes)") as body:
            result = await import_stream(rt.pool, rt.config, kind, body.chunks(), now=rt.now)
    if kind == "transactions" and rt.rules is not None:
        # New baskets: mine the rules again, in the background (the answer does not wait).
        rt.rules.request()
    return web.json_response(result)


@documented("Import customers (CSV)", auth=BY_MARKETER, body_media=CSV_BODY, errors=(415, 429))
async def import_customers(request: web.Request) -> web.Response:
    return await _import(request, "customers")


@documented("Import transactions (CSV)", auth=BY_MARKETER, body_media=CSV_BODY, errors=(415, 429))
async def import_transactions(request: web.Request) -> web.Response:
    return await _import(request, "transactions")


@documented("A customer's profile, segment and FRAT figures", auth=BY_MARKETER)
async def get_customer(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    row = await customer_row(rt.pool, request.match_info["customer_id"])
    profile = profile_json(row)
    profile["loyalty"] = await customer_loyalty(
        rt.pool, rt.config.loyalty.levels, row["customer_id"])
    prefs = await read_preferences(rt.pool, subject_of(row["customer_id"], ""))
    profile["preferences"] = prefs.as_json()
    return web.json_response(profile)


@documented("Erase a customer's personal data", auth=BY_MARKETER, status=204, media=None)
async def delete_customer(request: web.Request) -> web.Response:
    """Erasure: the profile goes; transactions and results stay, under no customer."""
    async with request.app[RUNTIME].pool.acquire() as conn, conn.transaction():
        if not await erase_customer(conn, request.match_info["customer_id"]):
            raise not_found("customer")  # rolls back: nothing to erase
    # Names on this process's leaderboards go at once (other processes' at their refresh,
    # and the consent check of every read drops an erased customer's name already).
    request.app[RUNTIME].leaderboards.invalidate()
    return web.Response(status=204)


@documented("Customers per FRAT segment", auth=BY_MARKETER)
async def get_segments(request: web.Request) -> web.Response:
    return web.json_response(await segment_summary(request.app[RUNTIME].pool))


@documented("Recompute the FRAT segments now", auth=BY_MARKETER)
async def post_recompute(request: web.Request) -> web.Response:
    rt = request.app[RUNTIME]
    return web.json_response(await recompute_segments(rt.pool, rt.config, rt.now()))


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/customers/import", import_customers),
        web.post("/v1/transactions/import", import_transactions),
        web.get("/v1/customers/{customer_id}", get_customer),
        web.delete("/v1/customers/{customer_id}", delete_customer),
        web.get("/v1/segments", get_segments),
        web.post("/v1/segments/recompute", post_recompute),
    ]
