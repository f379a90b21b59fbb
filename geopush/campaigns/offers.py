"""Offers and stores as plain values, and the validation of what marketers send (SPEC 4, 7).

Everything here is pure: the API hands a parsed JSON body to `parse_offer_fields` and gets
typed values back, or an `OfferError` naming the field, which it turns into a 400/422.
The same values, fetched from the database, feed `decide`. (A store's opening hours are
checked in `campaigns.opening_hours`.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, time
from typing import Any
from urllib.parse import urlsplit

from geopush.campaigns.errors import OfferError
from geopush.campaigns.opening_hours import parse_hhmm
from geopush.codes import OfferStatus, Segment, Trigger
from geopush.timefmt import format_ts, parse_rfc3339

#: Defaults of SPEC section 4.
DEFAULT_COOLDOWN_S = 86_400
DEFAULT_TTL_S = 900
MAX_CONTROL_PCT = 50
#: FCM refuses an Android ttl above 28 days; an offer valid longer than that is a mistake.
MAX_TTL_S = 28 * 86_400
MAX_COOLDOWN_S = 366 * 86_400
#: PostgreSQL `integer`, where priority and max_sends are stored.
_INT4_MAX = 2**31 - 1
#: The whole FCM payload is limited to 4 KB: keep each text well below it.
MAX_TITLE_CHARS = 200
MAX_BODY_CHARS = 1_000
MAX_TRANSLATIONS = 100
_MAX_ID_CHARS = 200
_MAX_CATEGORY_CHARS = 100
_MAX_DEEPLINK_CHARS = 2_048
_MAX_NAME_CHARS = 200

#: BCP 47-ish: a 2–8 letter language, then subtags; `_` is accepted like `-` (Android style).
_LOCALE = re.compile(r"[A-Za-z]{2,8}(?:[-_][A-Za-z0-9]{1,8})*")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


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
# Message templates


def validate_message(obj: object, field_name: str = "message") -> dict[str, Any]:
    """Validate a localized template and return a clean copy.

    `{"default_locale": "en", "translations": {"en": {"title", "body"}, "fr": {...}}}`: the
    default locale must have a translation (it is the last resort of `render`), every
    translation needs a non-empty title and body, and two keys may not name the same locale
    (`fr-CA` and `fr_ca`), since `render` could not choose between them.
    """
    if not isinstance(obj, dict):
        raise OfferError(field_name, "must be an object with default_locale and translations")
    _reject_unknown(obj, {"default_locale", "translations"}, field_name)
    default = obj.get("default_locale")
    if not isinstance(default, str) or not _LOCALE.fullmatch(default):
        raise OfferError(f"{field_name}.default_locale", 'must be a locale such as "en"')
    translations = obj.get("translations")
    tpath = f"{field_name}.translations"
    if not isinstance(translations, dict) or not translations:
        raise OfferError(tpath, "must be a non-empty object of locale → {title, body}")
    if len(translations) > MAX_TRANSLATIONS:
        raise OfferError(tpath, f"at most {MAX_TRANSLATIONS} translations")
    seen: dict[str, str] = {}
    clean: dict[str, dict[str, str]] = {}
    for locale, text in translations.items():
        path = f"{tpath}.{locale}"
        if not _LOCALE.fullmatch(locale):
            raise OfferError(path, 'key must be a locale such as "fr" or "fr-CA"')
        key = normalize_locale(locale)
        if key in seen:
            raise OfferError(path, f"names the same locale as {seen[key]!r}")
        seen[key] = locale
        if not isinstance(text, dict):
            raise OfferError(path, "must be an object with title and body")
        _reject_unknown(text, {"title", "body"}, path)
        title = _text(text.get("title"), f"{path}.title", MAX_TITLE_CHARS)
        body = _text(text.get("body"), f"{path}.body", MAX_BODY_CHARS)
        clean[locale] = {"title": title, "body": body}
    if normalize_locale(default) not in seen:
        raise OfferError(tpath, f"has no translation for the default locale {default!r}")
    return {"default_locale": default, "translations": clean}


def normalize_locale(tag: str) -> str:
    """Case-insensitive, `_` same as `-`: the form locales are compared in."""
    return tag.strip().replace("_", "-").lower()


def _text(value: object, path: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise OfferError(path, "must be a non-empty string")
    if len(value) > limit:
        raise OfferError(path, f"at most {limit} characters")
    if _CONTROL_CHARS.search(value):
        raise OfferError(path, "must not contain control characters")
    return value


# ---------------------------------------------------------------------------------------------
# Offer fields

#: Fields a client may send back from a GET; they are not writable and are ignored.
READ_ONLY_FIELDS = frozenset({"id", "created_at", "updated_at"})
_NULLABLE = frozenset(
    {
        "category",
        "audience",
        "starts_at",
        "ends_at",
        "daily_window",
        "max_sends",
        "deeplink",
        "name",
    }
)
_REQUIRED = ("trigger", "message")


def parse_offer_fields(obj: object, partial: bool) -> dict[str, Any]:
    """Validate a POST (`partial=False`) or PATCH (`partial=True`) body of `/v1/offers`.

    Returns `Offer` field names → typed values (`Trigger`, tuples, `DailyWindow`, aware UTC
    datetimes, ...). A full body gets every default filled in and its cross-field rules
    checked; a partial body returns only the fields it has, and the caller checks the merged
    offer with `validate_offer` (ends_at after starts_at and at least one target need both
    halves). Unknown fields are refused so a typo (`control_percent`) is not silently lost;
    `id`, `created_at` and `updated_at` are ignored so a client can send back what it got.
    """
    if not isinstance(obj, dict):
        raise OfferError("body", "must be a JSON object")
    known = {f.name for f in fields(Offer)} - {"id", "created_at"}
    _reject_unknown(obj, known | READ_ONLY_FIELDS, None)
    result: dict[str, Any] = {}
    for name, value in obj.items():
        if name in READ_ONLY_FIELDS:
            continue
        if value is None and name not in _NULLABLE:
            raise OfferError(name, "must not be null")
        result[name] = _FIELD_PARSERS[name](value, name)
    if partial:
        if "starts_at" in result and "ends_at" in result:
            _check_schedule(result["starts_at"], result["ends_at"])
        return result
    for name in _REQUIRED:
        if name not in result:
            raise OfferError(name, "is required")
    full = {**_defaults(), **result}
    _check_targets(full["geofence_ids"], full["store_ids"], full["trigger"])
    _check_schedule(full["starts_at"], full["ends_at"])
    _check_recommended(full["audience"], full["category"])
    return full


def validate_offer(offer: Offer) -> None:
    """The cross-field rules, for an offer built by merging a PATCH into the stored one."""
    _check_targets(offer.geofence_ids, offer.store_ids, offer.trigger)
    _check_schedule(offer.starts_at, offer.ends_at)
    _check_recommended(offer.audience, offer.category)


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
    created_at = _parse_datetime(obj.get("created_at"), "created_at")
    if created_at is None:
        raise OfferError("created_at", "is required")
    offer_id = obj.get("id")
    if not isinstance(offer_id, str) or not offer_id:
        raise OfferError("id", "must be a non-empty string")
    return Offer(id=offer_id, created_at=created_at, **values)


def _defaults() -> dict[str, Any]:
    return {
        f.name: f.default for f in fields(Offer) if f.name not in ("id", "created_at", *_REQUIRED)
    }


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


def _reject_unknown(obj: Mapping[str, Any], allowed: Iterable[str], prefix: str | None) -> None:
    allowed = set(allowed)
    for key in obj:
        if key not in allowed:
            path = key if prefix is None else f"{prefix}.{key}"
            raise OfferError(path, "unknown field")


def _parse_trigger(value: object, path: str) -> Trigger:
    try:
        return Trigger(str(value))
    except ValueError:
        raise OfferError(path, f"must be one of {', '.join(t.value for t in Trigger)}") from None


def _parse_status(value: object, path: str) -> OfferStatus:
    try:
        return OfferStatus(str(value))
    except ValueError:
        choices = ", ".join(s.value for s in OfferStatus)
        raise OfferError(path, f"must be one of {choices}") from None


def _parse_ids(value: object, path: str) -> tuple[str, ...]:
    return _string_list(value, path, _MAX_ID_CHARS)


def _parse_categories(value: object, path: str) -> tuple[str, ...]:
    return _string_list(value, path, _MAX_CATEGORY_CHARS)


def _string_list(value: object, path: str, limit: int) -> tuple[str, ...]:
    """A list of non-empty strings, duplicates dropped in order (they mean nothing twice)."""
    if not isinstance(value, list):
        raise OfferError(path, "must be a list of strings")
    result: dict[str, None] = {}
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise OfferError(f"{path}[{i}]", "must be a non-empty string")
        if len(item) > limit:
            raise OfferError(f"{path}[{i}]", f"at most {limit} characters")
        result[item] = None
    return tuple(result)


def _parse_segments(value: object, path: str) -> tuple[str, ...]:
    names = _string_list(value, path, _MAX_ID_CHARS)
    segments: list[str] = []
    for i, name in enumerate(names):
        try:
            segments.append(Segment(name))
        except ValueError:
            choices = ", ".join(s.value for s in Segment)
            raise OfferError(f"{path}[{i}]", f"must be one of {choices}") from None
    return tuple(segments)


def _parse_category(value: object, path: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise OfferError(path, "must be a non-empty string or null")
    if len(value) > _MAX_CATEGORY_CHARS:
        raise OfferError(path, f"at most {_MAX_CATEGORY_CHARS} characters")
    return value


def _parse_audience(value: object, path: str) -> Audience | None:
    """An audience with neither list set targets everyone: it is stored as no audience."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise OfferError(path, "must be an object with bought_any, bought_all, not_bought"
                               " and/or recommended, or null")
    _reject_unknown(value, {"bought_any", "bought_all", "not_bought", "recommended"}, path)
    bought_any = _parse_categories(value.get("bought_any", []), f"{path}.bought_any")
    bought_all = _parse_categories(value.get("bought_all", []), f"{path}.bought_all")
    not_bought = _parse_categories(value.get("not_bought", []), f"{path}.not_bought")
    recommended = value.get("recommended", False)
    if not isinstance(recommended, bool):
        raise OfferError(f"{path}.recommended", "must be true or false")
    for name, bought in (("bought_any", bought_any), ("bought_all", bought_all)):
        both = set(bought) & set(not_bought)
        if both:
            raise OfferError(path, f"{sorted(both)[0]!r} is in both {name} and not_bought")
    if not bought_any and not bought_all and not not_bought and not recommended:
        return None
    return Audience(bought_any=bought_any, not_bought=not_bought, bought_all=bought_all,
                    recommended=recommended)


def _parse_message(value: object, path: str) -> dict[str, Any]:
    return validate_message(value, path)


def _parse_datetime(value: object, path: str) -> datetime | None:
    """RFC 3339 with an offset (`Z` or `±HH:MM`), returned in UTC; a naive time is refused
    because nobody could tell which zone the marketer meant."""
    if value is None:
        return None
    parsed = parse_rfc3339(value) if isinstance(value, str) else None
    if parsed is None:
        raise OfferError(path, "must be an RFC 3339 date-time with an offset (Z or ±HH:MM),"
                               " such as 2025-05-01T09:00:00Z, in the years 1 to 9998")
    return parsed


def _parse_daily_window(value: object, path: str) -> DailyWindow | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise OfferError(path, 'must be {"start": "HH:MM", "end": "HH:MM"} or null')
    _reject_unknown(value, {"start", "end"}, path)
    start = parse_hhmm(value.get("start"), f"{path}.start", allow_24=False)
    end = parse_hhmm(value.get("end"), f"{path}.end", allow_24=True)
    if start == end:
        raise OfferError(path, "start and end are the same; use null for the whole day")
    return DailyWindow(start=start, end=end)


def _int(value: object, path: str, low: int, high: int) -> int:
    """An integer in [low, high]; 10.0 is accepted as 10 (some JSON encoders write it so)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OfferError(path, "must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise OfferError(path, "must be an integer")
        value = int(value)
    if not low <= value <= high:
        raise OfferError(path, f"must be between {low} and {high}")
    return value


def _parse_cooldown(value: object, path: str) -> int:
    return _int(value, path, 0, MAX_COOLDOWN_S)


def _parse_max_sends(value: object, path: str) -> int | None:
    return None if value is None else _int(value, path, 1, _INT4_MAX)


def _parse_priority(value: object, path: str) -> int:
    return _int(value, path, -_INT4_MAX, _INT4_MAX)


def _parse_control_pct(value: object, path: str) -> int:
    return _int(value, path, 0, MAX_CONTROL_PCT)


def _parse_ttl(value: object, path: str) -> int:
    return _int(value, path, 1, MAX_TTL_S)


def _parse_deeplink(value: object, path: str) -> str | None:
    """Any URI with a scheme: app links (`shop://offer/1`) as well as https links."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > _MAX_DEEPLINK_CHARS:
        raise OfferError(path, f"must be a URI of at most {_MAX_DEEPLINK_CHARS} characters")
    if any(c.isspace() for c in value) or _CONTROL_CHARS.search(value):
        raise OfferError(path, "must not contain spaces or control characters")
    if not urlsplit(value).scheme:
        raise OfferError(path, "must be an absolute URI such as https://... or app://...")
    return value


def _parse_bool(value: object, path: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise OfferError(path, "must be true or false")
    return value


def _parse_name(value: object, path: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > _MAX_NAME_CHARS:
        raise OfferError(path, f"must be a string of at most {_MAX_NAME_CHARS} characters")
    return value


_FIELD_PARSERS: dict[str, Any] = {
    "trigger": _parse_trigger,
    "geofence_ids": _parse_ids,
    "store_ids": _parse_ids,
    "segments": _parse_segments,
    "category": _parse_category,
    "audience": _parse_audience,
    "message": _parse_message,
    "starts_at": _parse_datetime,
    "ends_at": _parse_datetime,
    "daily_window": _parse_daily_window,
    "cooldown_s": _parse_cooldown,
    "max_sends": _parse_max_sends,
    "priority": _parse_priority,
    "control_pct": _parse_control_pct,
    "ttl_s": _parse_ttl,
    "deeplink": _parse_deeplink,
    "status": _parse_status,
    "name": _parse_name,
    "levels": _parse_ids,
    "allow_recent_buyers": _parse_bool,
}


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return format_ts(value)


def _end_hhmm(value: time) -> str:
    """Midnight as an end reads better as 24:00 ("until midnight")."""
    return "24:00" if value == time(0, 0) else value.strftime("%H:%M")
