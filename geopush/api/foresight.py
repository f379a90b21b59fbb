"""Foresight routes (SPEC section 16): preview an offer over past visits, send a test push."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from aiohttp import web

from geopush.api.body import path_id, read_model
from geopush.api.errors import not_found
from geopush.api.openapi import BY_MARKETER, documented
from geopush.api.runtime import RUNTIME
from geopush.api.schema import Chars, RequestBody, WholeIn
from geopush.campaigns.offer_body import OfferCreate
from geopush.foresight.draft import draft_offer
from geopush.foresight.load import LearningRules, preview_job
from geopush.foresight.test_push import send_test_push
from geopush.ingest.decisions import campaign_rules

MAX_DAYS = 30


class PreviewBody(RequestBody):
    """An offer as the composer has it (not saved; `id` of a saved one previews an edit of
    it in its place) and how many days back to replay."""

    offer: OfferCreate
    days: Annotated[int, WholeIn(1, MAX_DAYS)] = 7


@documented("What an offer would have done over the past days (nothing written or sent)",
            auth=BY_MARKETER, body=PreviewBody, errors=(422, 429))
async def post_preview(request: web.Request) -> web.Response:
    body = await read_model(request, PreviewBody)
    rt = request.app[RUNTIME]
    now = rt.now()
    offer = draft_offer(body.offer, now)

    def abandoned() -> bool:
        transport = request.transport
        return transport is None or transport.is_closing()

    config = rt.config
    result = await rt.miner.query(
        preview_job, rt.database_url, offer, body.days, now,
        campaign_rules(config), config.campaigns.preview_max_events,
        config.segments.lookback_days, dict(config.loyalty.levels),
        LearningRules(config.campaigns.fatigue_after, config.campaigns.fatigue_days,
                      config.campaigns.recently_bought_days), abandoned=abandoned)
    return web.json_response(result)


class TestPushBody(RequestBody):
    """The device the test push goes to (a marketer's own phone, typically)."""

    device_id: Annotated[str, Chars(100)]


@documented("Send an offer's message to one device now, as a test (counted nowhere)",
            auth=BY_MARKETER, body=TestPushBody, errors=(422,))
async def post_test_push(request: web.Request) -> web.Response:
    offer_id = path_id(request, "offer_id", "offer")
    body = await read_model(request, TestPushBody)
    try:
        device_id = UUID(body.device_id)
    except ValueError:
        raise not_found("device") from None
    rt = request.app[RUNTIME]
    async with rt.pool.acquire() as conn:
        result = await send_test_push(conn, rt.config.fcm, offer_id, device_id, rt.now())
    return web.json_response(result)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/offers/preview", post_preview),
        web.post("/v1/offers/{offer_id}/test", post_test_push),
    ]
