"""The error of a campaign field: what the offer and opening-hours checks raise."""

from __future__ import annotations

from geopush.errors import Invalid


class OfferError(Invalid, ValueError):
    """A field of an offer (or of a store's opening hours) is invalid (400).

    `field` is a dotted path into the request body (`message.translations.fr.title`,
    `opening_hours.mon[0]`), which the API's error middleware puts in the error's `details`;
    `reason` is the message without the path. Still a ValueError, for the parsers of config
    and CSV rows that catch those.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)
        self.reason = message
