"""The error of a campaign field: what the offer and opening-hours checks raise."""

from __future__ import annotations


class OfferError(ValueError):
    """A field of an offer (or of a store's opening hours) is invalid.

    `field` is a dotted path into the request body (`message.translations.fr.title`,
    `opening_hours.mon[0]`) so the API can put it in the error's `details`.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
