"""The offer a preview replays: the composer's body, checked as a create would check it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from geopush.campaigns.offers import Offer, parse_offer_fields
from geopush.codes import OfferStatus
from geopush.errors import Invalid
from geopush.foresight.load import check_previewable
from geopush.timefmt import parse_rfc3339

# The id a preview of an offer not saved yet decides under (its control group is then an
# estimate: the real one hashes the id the offer will get).
UNSAVED_ID = "preview"


def draft_offer(body: dict[str, Any], now: datetime) -> Offer:
    """The `Offer` to preview, active whatever its status (a paused draft is what one
    previews). `id`/`created_at` are kept when sent, so an edit of a saved offer replaces
    it in the replay and keeps its control group and seniority."""
    raw = dict(body)
    fields = parse_offer_fields(raw, partial=False)
    given_id = raw.get("id")
    offer_id = given_id if isinstance(given_id, str) and given_id else UNSAVED_ID
    created_at = now
    if isinstance(raw.get("created_at"), str):
        parsed = parse_rfc3339(raw["created_at"])
        if parsed is None:
            raise Invalid("created_at", "not an RFC 3339 time")
        created_at = parsed
    fields["status"] = OfferStatus.ACTIVE
    offer = Offer(id=offer_id, created_at=created_at, **fields)
    check_previewable(offer)
    return offer
