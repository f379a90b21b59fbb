"""Offers and stores as plain values, read from what marketers send (SPEC 4, 7).

Everything here is pure: `parse_offer_fields` checks a JSON body with the models of
`campaigns.offer_body` (the one definition of an offer body) and gives typed values back,
or an `OfferError` naming the field, which the API's middleware turns into a 400. The same
values, fetched from the database, feed `decide`. (A store's opening hours are checked in
`campaigns.opening_hours`.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, time
from typing import Any
from urllib.parse import urlsplit

from geopush.campaigns.errors import OfferError
from geopush.campaigns.offer_body import (
    DEFAULT_COOLDOWN_S,
    DEFAULT_TTL_S,
    AudienceBody,
    DailyWindowBody,
    Message,
    OfferCreate,
    OfferPatch,
    check_offer_body,
)
from geopush.campaigns.opening_hours import parse_hhmm
from geopush.codes import OfferStatus, Trigger
from geopush.timefmt import format_ts, parse_rfc3339


@dataclass(frozen=True)
class DailyWindow:
    """Hours of the day an offer may go out, in the store's time zone.

    Half-open `[start, end)`; `end <= start` wraps past midnight (`22:00–02:00`), and an end
    of `00:00` (written `24:00`) means midnight. `start == end` is an empty window: parsing
    refuses it, so only a hand-built value can be empty.
    """

    start: time
    end: time

    def contains(self, local: time) -> bool:
        return in_time_window(local, self.start, self.end)


#: How many of a customer's recommended categories an offer with `recommended` may match.
TOP_RECOMMENDED = 3


@dataclass(frozen=True)
class Audience:
    """Cross-selling by product type: who bought any of these (or all of those), none of
    those; or, with `recommended`, whose top recommended categories hold the offer's one.

    `bought_all` is an addition to SPEC section 4's lists: an association rule with several
    antecedents ({bread, butter} → jam) aims at those who bought every one of them, which
    `bought_any` cannot say.
    """

    bought_any: tuple[str, ...] = ()
    not_bought: tuple[str, ...] = ()
    bought_all: tuple[str, ...] = ()
    recommended: bool = False

    def matches(self, purchase_categories: frozenset[str],
                recommended_categories: tuple[str, ...] = (),
                category: str | None = None) -> bool:
        if self.bought_any and purchase_categories.isdisjoint(self.bought_any):
            return False
        if self.bought_all and not purchase_categories.issuperset(self.bought_all):
            return False
        if self.recommended and (category is None
                                 or category not in recommended_categories[:TOP_RECOMMENDED]):
            return False
        return purchase_categories.isdisjoint(self.not_bought)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"bought_any": list(self.bought_any),
                               "not_bought": list(self.not_bought)}
        if self.bought_all:
            out["bought_all"] = list(self.bought_all)
        if self.recommended:
            out["recommended"] = True
        return out


@dataclass(frozen=True)
class Offer:
    """An offer as stored; field names and defaults are SPEC section 4's.

    `message` is a validated template (see `validate_message`); `name` is an addition for the
    marketers' lists and dashboard, never sent to devices.
    """

    id: str
    trigger: Trigger
    message: dict[str, Any] = field(hash=False)
    created_at: datetime
    geofence_ids: tuple[str, ...] = ()
    store_ids: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()
    category: str | None = None
    audience: Audience | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    daily_window: DailyWindow | None = None
    cooldown_s: int = DEFAULT_COOLDOWN_S
    max_sends: int | None = None
    priority: int = 0
    control_pct: int = 0
    ttl_s: int = DEFAULT_TTL_S
    deeplink: str | None = None
    status: OfferStatus = OfferStatus.ACTIVE
    name: str | None = None
    # Loyalty levels (SPEC 11) the offer is for; empty is everyone. Names are checked
    # against `[loyalty] levels` by the API, which knows the configuration.
    levels: tuple[str, ...] = ()
    # SPEC 15: a replenishment offer is still made to who bought its category lately.
    allow_recent_buyers: bool = False


@dataclass(frozen=True)
class StoreInfo:
    """What the decision needs of a store; `opening_hours` is the validated JSON form."""

    id: str
    name: str
    timezone: str
    opening_hours: dict[str, Any] | None = field(default=None, hash=False)


def in_time_window(local: time, start: time, end: time) -> bool:
    """Whether a wall-clock time is in `[start, end)`, wrapping midnight when end < start.

    Shared by daily windows and quiet hours so both wrap the same way; `start == end` is
    empty, which is how a deployment turns quiet hours off.
    """
    local = local.replace(tzinfo=None)
    if start < end:
        return start <= local < end
    if start > end:
        return local >= start or local < end
    return False


# ---------------------------------------------------------------------------------------------
# Offer fields: what the body models of `geopush.campaigns.offer_body` checked, as values


def validate_message(obj: object, field_name: str = "message") -> dict[str, Any]:
    """A localized template checked by the `Message` model, as a clean copy.

    `{"default_locale": "en", "translations": {"en": {"title", "body"}, "fr": {...}}}`;
    `InvalidOffer` with paths under `field_name` otherwise.
    """
    return check_offer_body(Message, obj, field_name).as_json()


#: Fields a client may send back from a GET; they are not writable and are ignored.
READ_ONLY_FIELDS = frozenset({"id", "created_at", "updated_at"})


def parse_offer_fields(obj: object, partial: bool) -> dict[str, Any]:
    """Validate a POST (`partial=False`) or PATCH (`partial=True`) body of `/v1/offers`.

    The body is checked by `OfferCreate` or `OfferPatch` (every bad field listed by its
    path), then read by `offer_fields`.
    """
    return offer_fields(check_offer_body(OfferPatch if partial else OfferCreate, obj),
                        partial=partial)


def offer_fields(body: OfferCreate, *, partial: bool = False) -> dict[str, Any]:
    """`Offer` field names → typed values (`Trigger`, tuples, `DailyWindow`, aware UTC
    datetimes, ...) of a checked body.

    A full body gets every default filled in and its cross-field rules checked; a partial
    body returns only the fields it has, and the caller checks the merged offer with
    `validate_offer` (ends_at after starts_at and at least one target need both halves).
    `id`, `created_at` and `updated_at` are left out, so a client can send back what it got.
    """
    names = body.model_fields_set if partial else _OFFER_FIELDS
    result = {name: _VALUES[name](getattr(body, name)) for name in names
              if name not in READ_ONLY_FIELDS}
    if partial:
        if "starts_at" in result and "ends_at" in result:
            _check_schedule(result["starts_at"], result["ends_at"])
        return result
    _check_targets(result["geofence_ids"], result["store_ids"], result["trigger"])
    _check_schedule(result["starts_at"], result["ends_at"])
    _check_recommended(result["audience"], result["category"])
    return result


def validate_offer(offer: Offer) -> None:
    """The cross-field rules, for an offer built by merging a PATCH into the stored one."""
    _check_targets(offer.geofence_ids, offer.store_ids, offer.trigger)
    _check_schedule(offer.starts_at, offer.ends_at)
    _check_recommended(offer.audience, offer.category)


def check_deployment_rules(offer: Offer, levels: Mapping[str, int],
                           deeplink_schemes: Iterable[str]) -> None:
    """What a deployment's configuration adds to an offer's rules: its `levels` must name
    `[loyalty] levels` (a typo would silently never match anyone), and its deeplink must
    use one of `[campaigns] deeplink_schemes`."""
    for i, name in enumerate(offer.levels):
        if name not in levels:
            raise OfferError(f"levels.{i}",
                             f"unknown level; the levels are {', '.join(levels)}")
    check_deeplink_scheme(offer.deeplink, deeplink_schemes)


def check_deeplink_scheme(deeplink: str | None, allowed: Iterable[str]) -> None:
    """The deeplink rides in the push's data and the app opens it: only the retailer's schemes.

    The app key ships in every app, so an offer is the one place a `javascript:` or a
    stranger's link could be slipped into millions of phones; the list is `[campaigns]
    deeplink_schemes`.
    """
    if deeplink is None:
        return
    scheme = urlsplit(deeplink).scheme.lower()
    schemes = tuple(allowed)
    if scheme not in schemes:
        raise OfferError("deeplink", f"scheme {scheme!r} is not allowed; use one of: "
                         + ", ".join(schemes))


def offer_to_json(offer: Offer) -> dict[str, Any]:
    """The API (and storage) form of an offer; `offer_from_json` reads it back."""
    window = offer.daily_window
    return {
        "id": offer.id,
        "name": offer.name,
        "trigger": str(offer.trigger),
        "geofence_ids": list(offer.geofence_ids),
        "store_ids": list(offer.store_ids),
        "segments": [str(s) for s in offer.segments],
        "category": offer.category,
        "audience": None if offer.audience is None else offer.audience.as_json(),
        "message": offer.message,
        "starts_at": _iso(offer.starts_at),
        "ends_at": _iso(offer.ends_at),
        "daily_window": None
        if window is None
        else {"start": window.start.strftime("%H:%M"), "end": _end_hhmm(window.end)},
        "cooldown_s": offer.cooldown_s,
        "max_sends": offer.max_sends,
        "priority": offer.priority,
        "control_pct": offer.control_pct,
        "ttl_s": offer.ttl_s,
        "deeplink": offer.deeplink,
        "status": str(offer.status),
        "created_at": _iso(offer.created_at),
        "levels": list(offer.levels),
        "allow_recent_buyers": offer.allow_recent_buyers,
    }


def offer_from_json(obj: Mapping[str, Any]) -> Offer:
    """An `Offer` from `offer_to_json`'s form (e.g. a jsonb column), validated again."""
    body = {k: v for k, v in obj.items() if k not in READ_ONLY_FIELDS}
    values = parse_offer_fields(body, partial=False)
    created_at = obj.get("created_at")
    parsed = parse_rfc3339(created_at) if isinstance(created_at, str) else None
    if parsed is None:
        raise OfferError("created_at", "must be an RFC 3339 time")
    offer_id = obj.get("id")
    if not isinstance(offer_id, str) or not offer_id:
        raise OfferError("id", "must be a non-empty string")
    return Offer(id=offer_id, created_at=parsed, **values)


def _check_targets(geofence_ids: tuple[str, ...], store_ids: tuple[str, ...],
                   trigger: Trigger | None = None) -> None:
    if trigger == Trigger.REWARD:
        return  # a reward offer answers the challenge naming it, wherever that happened
    if not geofence_ids and not store_ids:
        raise OfferError("geofence_ids", "an offer needs at least one geofence_ids or store_ids")


def _check_recommended(audience: Audience | None, category: str | None) -> None:
    # The recommendation names a category; the offer must say which one it is about.
    if audience is not None and audience.recommended and category is None:
        raise OfferError("category", "an audience with recommended needs the offer's category")


def _check_schedule(starts_at: datetime | None, ends_at: datetime | None) -> None:
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise OfferError("ends_at", "must be later than starts_at")


def _distinct(values: list[Any]) -> tuple[Any, ...]:
    """Duplicates dropped in order: an id or a category means nothing twice."""
    return tuple(dict.fromkeys(values))


def _audience(body: AudienceBody | None) -> Audience | None:
    """An audience with neither list set targets everyone: it is stored as no audience."""
    if body is None or not (body.bought_any or body.bought_all or body.not_bought
                            or body.recommended):
        return None
    return Audience(bought_any=_distinct(body.bought_any), not_bought=_distinct(body.not_bought),
                    bought_all=_distinct(body.bought_all), recommended=body.recommended)


def _daily_window(body: DailyWindowBody | None) -> DailyWindow | None:
    if body is None:
        return None
    return DailyWindow(start=parse_hhmm(body.start, "daily_window.start", allow_24=False),
                       end=parse_hhmm(body.end, "daily_window.end", allow_24=True))


def _same(value: Any) -> Any:
    return value


_VALUES: dict[str, Callable[[Any], Any]] = {
    "trigger": _same,
    "geofence_ids": _distinct,
    "store_ids": _distinct,
    "segments": _distinct,
    "category": _same,
    "audience": _audience,
    "message": lambda message: message.as_json(),
    "starts_at": _same,
    "ends_at": _same,
    "daily_window": _daily_window,
    "cooldown_s": _same,
    "max_sends": _same,
    "priority": _same,
    "control_pct": _same,
    "ttl_s": _same,
    "deeplink": _same,
    "status": _same,
    "name": _same,
    "levels": _distinct,
    "allow_recent_buyers": _same,
}
_OFFER_FIELDS = frozenset(f.name for f in fields(Offer)) - {"id", "created_at"}


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return format_ts(value)


def _end_hhmm(value: time) -> str:
    """Midnight as an end reads better as 24:00 ("until midnight")."""
    return "24:00" if value == time(0, 0) else value.strftime("%H:%M")
