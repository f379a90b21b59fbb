"""Offers: what to push, to whom, where and when (SPEC section 4)."""

from __future__ import annotations

import dataclasses
import uuid
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import asyncpg
from aiohttp import web
from pydantic import Field

from geopush.api.auth import MARKETER, STATS, require_role
from geopush.api.body import path_id, read_body
from geopush.api.errors import ApiError, not_found
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
from geopush.api.schema import INT4_MAX, Name, RequestBody, Text, Time, Whole
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
    OfferError,
    check_deeplink_scheme,
    offer_to_json,
    parse_offer_fields,
    validate_offer,
)
from geopush.codes import OfferStatus, Segment, Trigger
from geopush.runtime import RUNTIME
from geopush.store.offers import offer_from_row
from geopush.timefmt import format_ts

_COLUMNS = "offer_id, trigger, status, definition, created_at, updated_at"


class Translation(RequestBody):
    title: Name(MAX_TITLE_CHARS)  # type: ignore[valid-type]
    body: Name(MAX_BODY_CHARS)  # type: ignore[valid-type]


class Message(RequestBody):
    """Localized templates; `{first_name}` and `{store_name}` are filled in."""

    default_locale: Text(35, min_length=2)  # type: ignore[valid-type]
    translations: Annotated[dict[Text(35, min_length=2), Translation],  # type: ignore[valid-type]
                            Field(min_length=1, max_length=MAX_TRANSLATIONS)]


class AudienceBody(RequestBody):
    """Cross-selling by product type; `recommended` matches customers whose top recommended
    categories (basket analysis) hold the offer's `category`."""

    bought_any: list[Name(100)] = Field(default_factory=list)  # type: ignore[valid-type]
    not_bought: list[Name(100)] = Field(default_factory=list)  # type: ignore[valid-type]
    bought_all: list[Name(100)] = Field(default_factory=list)  # type: ignore[valid-type]
    recommended: bool = False


class DailyWindowBody(RequestBody):
    start: Text(5)  # type: ignore[valid-type]
    end: Text(5)  # type: ignore[valid-type]


if TYPE_CHECKING:
    Ids = list[str]
else:
    Ids = list[Name(200)]


class OfferCreate(RequestBody):
    """SPEC section 4. `id`, `created_at` and `updated_at` are accepted and ignored, so a
    client can send back what it got."""

    trigger: Annotated[Trigger, Field(strict=False)]
    message: Message
    name: Text(200) | None = None  # type: ignore[valid-type]
    geofence_ids: Ids = Field(default_factory=list)
    store_ids: Ids = Field(default_factory=list)
    segments: list[Annotated[Segment, Field(strict=False)]] = Field(default_factory=list)
    category: Name(100) | None = None  # type: ignore[valid-type]
    audience: AudienceBody | None = None
    starts_at: Time | None = None
    ends_at: Time | None = None
    daily_window: DailyWindowBody | None = None
    cooldown_s: Whole(0, MAX_COOLDOWN_S) = DEFAULT_COOLDOWN_S  # type: ignore[valid-type]
    max_sends: Whole(1) | None = None  # type: ignore[valid-type]
    priority: Whole(-INT4_MAX) = 0  # type: ignore[valid-type]
    control_pct: Whole(0, MAX_CONTROL_PCT) = 0  # type: ignore[valid-type]
    ttl_s: Whole(1, MAX_TTL_S) = DEFAULT_TTL_S  # type: ignore[valid-type]
    deeplink: Text(2048) | None = None  # type: ignore[valid-type]
    status: Annotated[OfferStatus, Field(strict=False)] = OfferStatus.ACTIVE
    levels: list[Name(50)] = Field(default_factory=list)  # type: ignore[valid-type]
    allow_recent_buyers: bool = False
    id: Text(100) | None = None  # type: ignore[valid-type]
    created_at: Text(100) | None = None  # type: ignore[valid-type]
    updated_at: Text(100) | None = None  # type: ignore[valid-type]


class OfferPatch(OfferCreate):
    """Any of the fields; absent ones are unchanged."""

    trigger: Annotated[Trigger, Field(strict=False)] = None  # type: ignore[assignment]
    message: Message = None  # type: ignore[assignment]


def offer_json(row: asyncpg.Record) -> dict[str, Any]:
    out = offer_to_json(offer_from_row(row))
    out["updated_at"] = format_ts(row["updated_at"])
    return out


def _offer_error(exc: OfferError) -> ApiError:
    field = getattr(exc, "field", "body")
    message = getattr(exc, "message", str(exc))
    return ApiError(400, "invalid", f"{field}: {message}", [{"field": field, "message": message}])


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
    try:
        check_deeplink_scheme(offer.deeplink, schemes)
    except OfferError as exc:
        raise _offer_error(exc) from None


async def _check_targets(conn: asyncpg.Connection, offer: Offer) -> tuple[list[UUID], list[UUID]]:
    """Targets must name existing geofences and stores: a typo would silently never fire."""
    geofences = _uuids(offer.geofence_ids, "geofence_ids")
    stores = _uuids(offer.store_ids, "store_ids")
    known_g = {r[0] for r in await conn.fetch(
        "SELECT geofence_id FROM geofences WHERE geofence_id = ANY($1::uuid[])", geofences)}
    known_s = {r[0] for r in await conn.fetch(
        "SELECT store_id FROM stores WHERE store_id = ANY($1::uuid[])", stores)}
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
    await require_role(request, *MARKETER)
    body = await read_body(request, OfferCreate)
    try:
        fields = parse_offer_fields(body, partial=False)
        offer_id = str(uuid.uuid4())
        rt = request.app[RUNTIME]
        offer = Offer(id=offer_id, created_at=rt.now(), **fields)
    except OfferError as exc:
        raise _offer_error(exc) from None
    _check_levels(offer, rt.config.loyalty.levels)
    _check_deeplink(offer, rt.config.campaigns.deeplink_schemes)
    async with rt.pool.acquire() as conn, conn.transaction():
        geofences, stores = await _check_targets(conn, offer)
        row = await conn.fetchrow(
            "INSERT INTO offers (offer_id, trigger, geofence_ids, store_ids, status, definition)"
            f" VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}",
            UUID(offer_id), str(offer.trigger), geofences, stores, str(offer.status),
            _definition(offer),
        )
    return web.json_response(offer_json(row), status=201)



@documented("List offers", auth=BY_STATS,
            query=(*PAGE, *text_queries("status", "trigger")), response=page_of(OFFER))
async def list_offers(request: web.Request) -> web.Response:
    await require_role(request, *STATS)
    limit, cursor = page_params(request)
    conditions, args = ["deleted_at IS NULL"], list[Any]([limit + 1])
    if cursor:
        args += list(cursor)
        conditions.append(f"(created_at, offer_id) > (${len(args) - 1}, ${len(args)})")
    for key in ("status", "trigger"):
        if request.query.get(key):
            args.append(request.query[key])
            conditions.append(f"{key} = ${len(args)}")
    rows = await request.app[RUNTIME].pool.fetch(
        f"SELECT {_COLUMNS} FROM offers WHERE {' AND '.join(conditions)}"
        " ORDER BY created_at, offer_id LIMIT $1", *args,
    )
    return web.json_response(page([offer_json(r) for r in rows], rows, limit, "offer_id"))


@documented("One offer", auth=BY_STATS, response=OFFER)
async def get_offer(request: web.Request) -> web.Response:
    await require_role(request, *STATS)
    row = await request.app[RUNTIME].pool.fetchrow(
        f"SELECT {_COLUMNS} FROM offers WHERE offer_id = $1 AND deleted_at IS NULL",
        path_id(request, "offer_id", "offer"),
    )
    if row is None:
        raise not_found("offer")
    return web.json_response(offer_json(row))


@documented("Change, pause or resume an offer", auth=BY_MARKETER, body=OfferPatch, errors=(422,),
            response=OFFER)
async def patch_offer(request: web.Request) -> web.Response:
    await require_role(request, *MARKETER)
    offer_id = path_id(request, "offer_id", "offer")
    body = await read_body(request, OfferPatch)
    rt = request.app[RUNTIME]
    try:
        changes = parse_offer_fields(body, partial=True)
    except OfferError as exc:
        raise _offer_error(exc) from None
    async with rt.pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM offers WHERE offer_id = $1 AND deleted_at IS NULL"
            " FOR UPDATE", offer_id,
        )
        if row is None:
            raise not_found("offer")
        try:
            offer = dataclasses.replace(offer_from_row(row), **changes)
            validate_offer(offer)
        except OfferError as exc:
            raise _offer_error(exc) from None
        _check_levels(offer, rt.config.loyalty.levels)
        _check_deeplink(offer, rt.config.campaigns.deeplink_schemes)
        geofences, stores = await _check_targets(conn, offer)
        row = await conn.fetchrow(
            "UPDATE offers SET trigger = $2, geofence_ids = $3, store_ids = $4, status = $5,"
            f" definition = $6, updated_at = now() WHERE offer_id = $1 RETURNING {_COLUMNS}",
            offer_id, str(offer.trigger), geofences, stores, str(offer.status),
            _definition(offer),
        )
    return web.json_response(offer_json(row))


@documented("Delete an offer (its results stay)", auth=BY_MARKETER, status=204, media=None)
async def delete_offer(request: web.Request) -> web.Response:
    """Soft delete: the offer stops at once, its decisions and results stay readable."""
    await require_role(request, *MARKETER)
    deleted = await request.app[RUNTIME].pool.fetchval(
        "UPDATE offers SET deleted_at = now(), status = 'paused' WHERE offer_id = $1"
        " AND deleted_at IS NULL RETURNING true", path_id(request, "offer_id", "offer"),
    )
    if not deleted:
        raise not_found("offer")
    return web.Response(status=204)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/offers", post_offer),
        web.get("/v1/offers", list_offers),
        web.get("/v1/offers/{offer_id}", get_offer),
        web.patch("/v1/offers/{offer_id}", patch_offer),
        web.delete("/v1/offers/{offer_id}", delete_offer),
    ]
