"""The offer a preview replays: the composer's body, checked as a create would check it."""

from __future__ import annotations

from datetime import datetime

from geopush.campaigns.offer_body import OfferCreate
from geopush.campaigns.offers import Offer, offer_fields
from geopush.codes import OfferStatus
from geopush.errors import Invalid
from geopush.foresight.load import check_previewable
from geopush.timefmt import parse_rfc3339

# The id a preview of an offer not saved yet decides under (its control group is then an
# estimate: the real one hashes the id the offer will get).
UNSAVED_ID = "preview"


def draft_offer(body: OfferCreate, now: datetime) -> Offer:
    """The `Offer` to preview, active whatever its status (a paused draft is what one
    previews). `id`/`created_at` are kept when sent, so an edit of a saved offer replaces
    it in the replay and keeps its control group and seniority.

    `body` is checked by the same model as `POST /v1/offers`; the cross-field rules of a
    create are checked here."""
    fields = offer_fields(body)
    offer_id = body.id or UNSAVED_ID
    created_at = now
    if body.created_at is not None:
        parsed = parse_rfc3339(body.created_at)
        if parsed is None:
            raise Invalid("created_at", "not an RFC 3339 time")
        created_at = parsed
    fields["status"] = OfferStatus.ACTIVE
    offer = Offer(id=offer_id, created_at=created_at, **fields)
    check_previewable(offer)
    return offer
