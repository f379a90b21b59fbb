"""Offers: what to push, to whom, where and when (SPEC section 4)."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any
from uuid import UUID

import asyncpg
from aiohttp import web

from geopush.api.body import path_id, read_json
from geopush.api.openapi import (
    BY_MARKETER,
    BY_STATS,
    OFFER,
    PAGE,
    documented,
    page_of,
    text_queries,
)
from geopush.api.pagination import page, page_params
from geopush.api.runtime import RUNTIME
from geopush.campaigns.offer_body import OfferCreate, OfferPatch
from geopush.campaigns.offers import (
    Offer,
    check_deployment_rules,
    offer_to_json,
    parse_offer_fields,
    validate_offer,
)
from geopush.store.keyset import fetch_page
from geopush.store.offers import (
    LISTING,
    checked_targets,
    insert_offer,
    offer_from_row,
    offer_row,
    remove_offer,
    update_offer,
)
from geopush.timefmt import format_ts

_LISTING = LISTING


def offer_json(row: asyncpg.Record) -> dict[str, Any]:
    out = offer_to_json(offer_from_row(row))
    out["updated_at"] = format_ts(row["updated_at"])
    return out


def _definition(offer: Offer) -> dict[str, Any]:
    d = offer_to_json(offer)
    for key in ("id", "created_at", "status"):
        d.pop(key, None)
    return d


@documented("Create an offer", auth=BY_MARKETER, body=OfferCreate, status=201, errors=(422,),
            response=OFFER)
async def post_offer(request: web.Request) -> web.Response:
    fields = parse_offer_fields(await read_json(request), partial=False)
    offer_id = str(uuid.uuid4())
    rt = request.app[RUNTIME]
    offer = Offer(id=offer_id, created_at=rt.now(), **fields)
    check_deployment_rules(offer, rt.config.loyalty.levels,
                           rt.config.campaigns.deeplink_schemes)
    async with rt.pool.acquire() as conn, conn.transaction():
        geofences, stores = await checked_targets(conn, offer)
        row = await insert_offer(conn, UUID(offer_id), str(offer.trigger), geofences, stores,
                                 str(offer.status), _definition(offer))
    await rt.offer_keys.reload(rt.pool)  # this process decides with it from now on
    return web.json_response(offer_json(row), status=201)



@documented("List offers", auth=BY_STATS,
            query=(*PAGE, *text_queries("status", "trigger")), response=page_of(OFFER))
async def list_offers(request: web.Request) -> web.Response:
    limit, cursor = page_params(request)
    rows = await fetch_page(request.app[RUNTIME].pool, _LISTING, limit, cursor,
                            {key: request.query.get(key) or None
                             for key in ("status", "trigger")})
    return web.json_response(page([offer_json(r) for r in rows], rows, limit, "offer_id"))


@documented("One offer", auth=BY_STATS, response=OFFER)
async def get_offer(request: web.Request) -> web.Response:
    row = await offer_row(request.app[RUNTIME].pool, path_id(request, "offer_id", "offer"))
    return web.json_response(offer_json(row))


@documented("Change, pause or resume an offer", auth=BY_MARKETER, body=OfferPatch, errors=(422,),
            response=OFFER)
async def patch_offer(request: web.Request) -> web.Response:
    offer_id = path_id(request, "offer_id", "offer")
    changes = parse_offer_fields(await read_json(request), partial=True)
    rt = request.app[RUNTIME]
    async with rt.pool.acquire() as conn, conn.transaction():
        row = await offer_row(conn, offer_id, lock=True)
        offer = dataclasses.replace(offer_from_row(row), **changes)
        validate_offer(offer)
        check_deployment_rules(offer, rt.config.loyalty.levels,
                               rt.config.campaigns.deeplink_schemes)
        geofences, stores = await checked_targets(conn, offer)
        row = await update_offer(conn, offer_id, str(offer.trigger), geofences, stores,
                                 str(offer.status), _definition(offer))
    await rt.offer_keys.reload(rt.pool)  # this process decides with it from now on
    return web.json_response(offer_json(row))


@documented("Delete an offer (its results stay)", auth=BY_MARKETER, status=204, media=None)
async def delete_offer(request: web.Request) -> web.Response:
    """Soft delete: the offer stops at once, its decisions and results stay readable."""
    await remove_offer(request.app[RUNTIME].pool, path_id(request, "offer_id", "offer"))
    await request.app[RUNTIME].offer_keys.reload(request.app[RUNTIME].pool)
    return web.Response(status=204)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/offers", post_offer),
        web.get("/v1/offers", list_offers),
        web.get("/v1/offers/{offer_id}", get_offer),
        web.patch("/v1/offers/{offer_id}", patch_offer),
        web.delete("/v1/offers/{offer_id}", delete_offer),
    ]
