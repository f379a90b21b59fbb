"""Foresight routes (SPEC section 16): preview an offer over past visits, send a test push."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from geopush.api.auth import MARKETER, require_role
from geopush.api.body import read_body
from geopush.api.errors import ApiError
from geopush.api.offers import OfferCreate
from geopush.api.openapi import BY_MARKETER, documented
from geopush.api.schema import RequestBody, Whole
from geopush.campaigns.offers import Offer, OfferError, parse_offer_fields
from geopush.codes import OfferStatus
from geopush.errors import Invalid
from geopush.foresight.load import check_previewable, preview_job
from geopush.ingest.decisions import campaign_rules
from geopush.insights.mining_pool import QueriesBusy
from geopush.runtime import RUNTIME
from geopush.timefmt import parse_rfc3339

MAX_DAYS = 30
# The id a preview of an offer not saved yet decides under (its control group is then an
# estimate: the real one hashes the id the offer will get).
UNSAVED_ID = "preview"


class PreviewBody(RequestBody):
    """An offer as the composer has it (not saved; `id` of a saved one previews an edit of
    it in its place) and how many days back to replay."""

    offer: OfferCreate
    days: Whole(1, MAX_DAYS) = 7  # type: ignore[valid-type]


def preview_offer_of(body: dict[str, Any], now: datetime) -> Offer:
    """The `Offer` to preview: validated as a create would be; `id`/`created_at` kept when
    sent, so an edit of a saved offer replaces it and keeps its control group and seniority."""
    raw = dict(body)
    try:
        fields = parse_offer_fields(raw, partial=False)
    except OfferError as exc:
        field = getattr(exc, "field", "offer")
        raise Invalid(f"offer.{field}", getattr(exc, "message", str(exc))) from None
    offer_id = raw.get("id") if isinstance(raw.get("id"), str) and raw.get("id") else UNSAVED_ID
    created_at = now
    if isinstance(raw.get("created_at"), str):
        parsed = parse_rfc3339(raw["created_at"])
        if parsed is None:
            raise Invalid("offer.created_at", "not an RFC 3339 time")
        created_at = parsed
    # Previewed as if active: a paused draft is exactly what one previews.
    fields["status"] = OfferStatus.ACTIVE
    offer = Offer(id=str(offer_id), created_at=created_at, **fields)
    check_previewable(offer)
    return offer


@documented("What an offer would have done over the past days (nothing written or sent)",
            auth=BY_MARKETER, body=PreviewBody, errors=(422, 429))
async def post_preview(request: web.Request) -> web.Response:
    await require_role(request, *MARKETER)
    body = await read_body(request, PreviewBody)
    rt = request.app[RUNTIME]
    now = rt.now()
    offer = preview_offer_of(body["offer"], now)

    def abandoned() -> bool:
        transport = request.transport
        return transport is None or transport.is_closing()

    config = rt.config
    try:
        result = await rt.miner.query(
            preview_job, rt.database_url, offer, int(body.get("days", 7)), now,
            campaign_rules(config), config.campaigns.preview_max_events,
            config.segments.lookback_days, dict(config.loyalty.levels), abandoned=abandoned)
    except QueriesBusy as exc:
        raise ApiError(429, "rate_limited", f"{exc}: try again shortly",
                       headers={"Retry-After": "5"}) from None
    return web.json_response(result)


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/offers/preview", post_preview),
    ]
