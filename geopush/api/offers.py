"""Offers: what to push, to whom, where and when (SPEC section 4)."""

from __future__ import annotations

import dataclasses
import uuid
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import asyncpg
from aiohttp import web
from pydantic import Field

from geopush.api.body import path_id, read_body
from geopush.api.errors import ApiError
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
from geopush.api.schema import INT4_MAX, Chars, NonBlank, RequestBody, Time, WholeIn
from geopush.campaigns.offers import (
    DEFAULT_COOLDOWN_S,
    DEFAULT_TTL_S,
    MAX_BODY_CHARS,
    MAX_CONTROL_PCT,
    MAX_COOLDOWN_S,
    MAX_TITLE_CHARS,
    MAX_TRANSLATIONS,
    MAX_TTL_S,
    Offer,
    check_deeplink_scheme,
    offer_to_json,
    parse_offer_fields,
    validate_offer,
)
from geopush.codes import OfferStatus, Segment, Trigger
from geopush.store.keyset import fetch_page
from geopush.store.offers import (
    LISTING,
    insert_offer,
    known_targets,
    offer_from_row,
    offer_row,
    remove_offer,
    update_offer,
)
from geopush.timefmt import format_ts

_LISTING = LISTING


class Translation(RequestBody):
    title: Annotated[str, NonBlank(MAX_TITLE_CHARS)]
    body: Annotated[str, NonBlank(MAX_BODY_CHARS)]


class Message(RequestBody):
    """Localized templates; `{first_name}` and `{store_name}` are filled in."""

    default_locale: Annotated[str, Chars(35, min_length=2)]
    translations: Annotated[dict[Annotated[str, Chars(35, min_length=2)], Translation],
                            Field(min_length=1, max_length=MAX_TRANSLATIONS)]


class AudienceBody(RequestBody):
    """Cross-selling by product type; `recommended` matches customers whose top recommended
    categories (basket analysis) hold the offer's `category`."""

    bought_any: list[Annotated[str, NonBlank(100)]] = Field(default_factory=list)
    not_bought: list[Annotated[str, NonBlank(100)]] = Field(default_factory=list)
    bought_all: list[Annotated[str, NonBlank(100)]] = Field(default_factory=list)
    recommended: bool = False


class DailyWindowBody(RequestBody):
    start: Annotated[str, Chars(5)]
    end: Annotated[str, Chars(5)]


if TYPE_CHECKING:
    Ids = list[str]
else:
    Ids = list[Annotated[str, NonBlank(200)]]


class OfferCreate(RequestBody):
    """SPEC section 4. `id`, `created_at` and `updated_at` are accepted and ignored, so a
    client can send back what it got."""

    trigger: Annotated[Trigger, Field(strict=False)]
    message: Message
    name: Annotated[str, Chars(200)] | None = None
    geofence_ids: Ids = Field(default_factory=list)
    store_ids: Ids = Field(default_factory=list)
    segments: list[Annotated[Segment, Field(strict=False)]] = Field(default_factory=list)
    category: Annotated[str, NonBlank(100)] | None = None
    audience: AudienceBody | None = None
    starts_at: Time | None = None
    ends_at: Time | None = None
    daily_window: DailyWindowBody | None = None
    cooldown_s: Annotated[int, WholeIn(0, MAX_COOLDOWN_S)] = DEFAULT_COOLDOWN_S
    max_sends: Annotated[int, WholeIn(1)] | None = None
    priority: Annotated[int, WholeIn(-INT4_MAX)] = 0
    control_pct: Annotated[int, WholeIn(0, MAX_CONTROL_PCT)] = 0
    ttl_s: Annotated[int, WholeIn(1, MAX_TTL_S)] = DEFAULT_TTL_S
    deeplink: Annotated[str, Chars(2048)] | None = None
    status: Annotated[OfferStatus, Field(strict=False)] = OfferStatus.ACTIVE
    levels: list[Annotated[str, NonBlank(50)]] = Field(default_factory=list)
    allow_recent_buyers: bool = False
    id: Annotated[str, Chars(100)] | None = None
    created_at: Annotated[str, Chars(100)] | None = None
    updated_at: Annotated[str, Chars(100)] | None = None


class OfferPatch(OfferCreate):
    """Any of the fields; absent ones are unchanged."""

    trigger: Annotated[Trigger, Field(strict=False)] = None  # type: ignore[assignment]
    message: Message = None  # type: ignore[assignment]


def offer_json(row: asyncpg.Record) -> dict[str, Any]:
    out = offer_to_json(offer_from_row(row))
    out["updated_at"] = format_ts(row["updated_at"])
    return out


def _uuids(values: tuple[str, ...], field: str) -> list[UUID]:
    out = []
    for i, v in enumerate(values):
        try:
            out.append(UUID(v))
        except ValueError:
            raise ApiError(400, "invalid", f"{field}[{i}]: not an id",
                           [{"field": f"{field}[{i}]", "message": "not an id"}]) from None
    return out


def _check_levels(offer: Offer, levels: dict[str, int]) -> None:
    """`levels` must name `[loyalty] levels`: a typo would silently never match anyone."""
    for i, name in enumerate(offer.levels):
        if name not in levels:
            message = f"unknown level; the levels are {', '.join(levels)}"
            raise ApiError(400, "invalid", f"levels[{i}]: {message}",
                           [{"field": f"levels[{i}]", "message": message}])


def _check_deeplink(offer: Offer, schemes: tuple[str, ...]) -> None:
    check_deeplink_scheme(offer.deeplink, schemes)


async def _check_targets(conn: asyncpg.Connection, offer: Offer) -> tuple[list[UUID], list[UUID]]:
    """Targets must name existing geofences and stores: a typo would silently never fire."""
    geofences = _uuids(offer.geofence_ids, "geofence_ids")
    stores = _uuids(offer.store_ids, "store_ids")
    known_g, known_s = await known_targets(conn, geofences, stores)
    missing = [{"field": "geofence_ids", "id": str(g)} for g in geofences if g not in known_g]
    missing += [{"field": "store_ids", "id": str(s)} for s in stores if s not in known_s]
    if missing:
        raise ApiError(422, "unknown_target", "offer targets unknown geofences or stores",
                       missing)
    return geofences, stores


def _definition(offer: Offer) -> dict[str, Any]:
    d = offer_to_json(offer)
    for key in ("id", "created_at", "status"):
        d.pop(key, None)
    return d


@documented("Create an offer", auth=BY_MARKETER, body=OfferCreate, status=201, errors=(422,),
            response=OFFER)
async def post_offer(request: web.Request) -> web.Response:
    body = await read_body(request, OfferCreate)
    fields = parse_offer_fields(body, partial=False)
    offer_id = str(uuid.uuid4())
    rt = request.app[RUNTIME]
    offer = Offer(id=offer_id, created_at=rt.now(), **fields)
    _check_levels(offer, rt.config.loyalty.levels)
    _check_deeplink(offer, rt.config.campaigns.deeplink_schemes)
    async with rt.pool.acquire() as conn, conn.transaction():
        geofences, stores = await _check_targets(conn, offer)
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
    body = await read_body(request, OfferPatch)
    rt = request.app[RUNTIME]
    changes = parse_offer_fields(body, partial=True)
    async with rt.pool.acquire() as conn, conn.transaction():
        row = await offer_row(conn, offer_id, lock=True)
        offer = dataclasses.replace(offer_from_row(row), **changes)
        validate_offer(offer)
        _check_levels(offer, rt.config.loyalty.levels)
        _check_deeplink(offer, rt.config.campaigns.deeplink_schemes)
        geofences, stores = await _check_targets(conn, offer)
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
