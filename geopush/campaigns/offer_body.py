"""The one definition of an offer body (SPEC section 4), for every reader of one.

`POST /v1/offers`, its `PATCH`, a preview's draft (`geopush.foresight.draft`) and an
offer read back from its stored definition are all checked by these models, and the
OpenAPI document is generated from them. Each field's rules (lengths, ranges, a locale tag,
an absolute URI, a time of day) are part of its type, so a bad value is refused with the
path of the field it is in, and every problem of a body is listed at once. The rules across
fields (ends_at after starts_at, a target, a category for `recommended`) need the stored
offer on a PATCH and are checked on the merged value in `geopush.campaigns.offers`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from geopush.campaigns.errors import OfferError
from geopush.campaigns.opening_hours import ClockEnd, ClockTime, parse_hhmm
from geopush.codes import OfferStatus, Segment, Trigger
from geopush.fields import (
    ABSENT,
    INT4_MAX,
    Chars,
    InvalidBody,
    NonBlank,
    RequestBody,
    Time,
    WholeIn,
    problems,
)

#: Defaults of SPEC section 4.
DEFAULT_COOLDOWN_S = 86_400
DEFAULT_TTL_S = 900
MAX_CONTROL_PCT = 50
#: FCM refuses an Android ttl above 28 days; an offer valid longer than that is a mistake.
MAX_TTL_S = 28 * 86_400
MAX_COOLDOWN_S = 366 * 86_400
#: The whole FCM payload is limited to 4 KB: keep each text well below it.
MAX_TITLE_CHARS = 200
MAX_BODY_CHARS = 1_000
MAX_TRANSLATIONS = 100
MAX_DEEPLINK_CHARS = 2_048

#: BCP 47-ish: a 2–8 letter language, then subtags; `_` is accepted like `-` (Android style).
_LOCALE = re.compile(r"[A-Za-z]{2,8}(?:[-_][A-Za-z0-9]{1,8})*")
#: Control characters other than tab and line breaks, which a body may hold.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class InvalidOffer(InvalidBody, OfferError):
    """An offer body its model refuses (400): every problem in `details`, the first one's
    path in `field` and its message in `reason`."""

    def __init__(self, headline: str, details: list[dict[str, Any]]) -> None:
        InvalidBody.__init__(self, headline, details)
        self.reason = details[0]["message"] if details else headline


M = TypeVar("M", bound=BaseModel)


def check_offer_body(model: type[M], value: Any, prefix: str = "") -> M:
    """`value` as `model`, or `InvalidOffer` listing every problem (paths under `prefix`)."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        headline, details = problems(exc)
        if prefix:
            details = [{**d, "field": f"{prefix}.{d['field']}" if d["field"] else prefix}
                       for d in details]
            headline = f"{details[0]['field']}: {details[0]['message']}"
        raise InvalidOffer(headline, details) from None


def normalize_locale(tag: str) -> str:
    """Case-insensitive, `_` same as `-`: the form locales are compared in."""
    return tag.strip().replace("_", "-").lower()


# --- field rules ----------------------------------------------------------------------------

def _locale(value: str) -> str:
    if not _LOCALE.fullmatch(value):
        raise PydanticCustomError("locale", 'must be a locale such as "en"')
    return value


def _locale_key(value: str) -> str:
    if not _LOCALE.fullmatch(value):
        raise PydanticCustomError("locale", 'key must be a locale such as "fr" or "fr-CA"')
    return value


def _no_control(value: str) -> str:
    if _CONTROL_CHARS.search(value):
        raise PydanticCustomError("control", "must not contain control characters")
    return value


def _absolute_uri(value: str) -> str:
    """Any URI with a scheme: app links (`shop://offer/1`) as well as https links; which
    schemes a deployment allows is `check_deeplink_scheme`'s business."""
    if not value:
        raise PydanticCustomError(
            "uri", "must be a URI of at most {limit} characters", {"limit": MAX_DEEPLINK_CHARS})
    if any(c.isspace() for c in value) or _CONTROL_CHARS.search(value):
        raise PydanticCustomError("uri", "must not contain spaces or control characters")
    if not urlsplit(value).scheme:
        raise PydanticCustomError("uri",
                                  "must be an absolute URI such as https://... or app://...")
    return value


def _at(key: str, kind: str, message: str, value: Any) -> ValidationError:
    """A problem of one entry of a mapping, reported at that entry's path."""
    return ValidationError.from_exception_data("translations", [InitErrorDetails(
        type=PydanticCustomError(kind, message), loc=(key,), input=value)])


Locale = Annotated[str, Chars(35, min_length=2), AfterValidator(_locale)]
LocaleKey = Annotated[str, Chars(35, min_length=2), AfterValidator(_locale_key)]
Category = Annotated[str, NonBlank(100)]
Ids = list[Annotated[str, NonBlank(200)]]


# --- the models -----------------------------------------------------------------------------

class Translation(RequestBody):
    title: Annotated[str, NonBlank(MAX_TITLE_CHARS), AfterValidator(_no_control)]
    body: Annotated[str, NonBlank(MAX_BODY_CHARS), AfterValidator(_no_control)]


class Message(RequestBody):
    """Localized templates; `{first_name}` and `{store_name}` are filled in.

    The default locale must have a translation (it is the last resort of `render`), and two
    keys may not name the same locale (`fr-CA` and `fr_ca`): `render` could not choose.
    """

    default_locale: Locale
    translations: Annotated[dict[LocaleKey, Translation],
                            Field(min_length=1, max_length=MAX_TRANSLATIONS)]

    @field_validator("translations")
    @classmethod
    def _one_per_locale(cls, value: dict[str, Translation],
                        info: ValidationInfo) -> dict[str, Translation]:
        seen: dict[str, str] = {}
        for locale in value:
            key = normalize_locale(locale)
            if key in seen:
                raise _at(locale, "same_locale", f"names the same locale as {seen[key]!r}",
                          value[locale])
            seen[key] = locale
        default = info.data.get("default_locale")
        if default is not None and normalize_locale(default) not in seen:
            raise PydanticCustomError(
                "default_locale", "has no translation for the default locale {locale}",
                {"locale": repr(default)})
        return value

    def as_json(self) -> dict[str, Any]:
        return self.model_dump()


class AudienceBody(RequestBody):
    """Cross-selling by product type; `recommended` matches customers whose top recommended
    categories (basket analysis) hold the offer's `category`."""

    bought_any: list[Category] = Field(default_factory=list)
    not_bought: list[Category] = Field(default_factory=list)
    bought_all: list[Category] = Field(default_factory=list)
    recommended: bool = False

    @model_validator(mode="after")
    def _no_contradiction(self) -> AudienceBody:
        for name in ("bought_any", "bought_all"):
            both = set(getattr(self, name)) & set(self.not_bought)
            if both:
                raise PydanticCustomError(
                    "contradiction", "{category} is in both {list} and not_bought",
                    {"category": repr(sorted(both)[0]), "list": name})
        return self


class DailyWindowBody(RequestBody):
    """`HH:MM` to `HH:MM` in the store's time zone; an end not after the start wraps past
    midnight, and `24:00` is midnight as an end."""

    start: ClockTime
    end: ClockEnd

    @model_validator(mode="after")
    def _not_empty(self) -> DailyWindowBody:
        if (parse_hhmm(self.start, "start", allow_24=False)
                == parse_hhmm(self.end, "end", allow_24=True)):
            raise PydanticCustomError(
                "empty_window", "start and end are the same; use null for the whole day")
        return self


class OfferCreate(RequestBody):
    """SPEC section 4. `id`, `created_at` and `updated_at` are accepted and ignored, so a
    client can send back what it got."""

    trigger: Annotated[Trigger, Field(strict=False)]
    message: Message
    name: Annotated[str, Chars(200)] | None = None
    geofence_ids: Ids = Field(default_factory=list)
    store_ids: Ids = Field(default_factory=list)
    segments: list[Annotated[Segment, Field(strict=False)]] = Field(default_factory=list)
    category: Category | None = None
    audience: AudienceBody | None = None
    starts_at: Time | None = None
    ends_at: Time | None = None
    daily_window: DailyWindowBody | None = None
    cooldown_s: Annotated[int, WholeIn(0, MAX_COOLDOWN_S)] = DEFAULT_COOLDOWN_S
    max_sends: Annotated[int, WholeIn(1)] | None = None
    priority: Annotated[int, WholeIn(-INT4_MAX)] = 0
    control_pct: Annotated[int, WholeIn(0, MAX_CONTROL_PCT)] = 0
    ttl_s: Annotated[int, WholeIn(1, MAX_TTL_S)] = DEFAULT_TTL_S
    deeplink: Annotated[str, Chars(MAX_DEEPLINK_CHARS), AfterValidator(_absolute_uri)] | None = None
    status: Annotated[OfferStatus, Field(strict=False)] = OfferStatus.ACTIVE
    # Loyalty levels (SPEC 11); their names are checked against `[loyalty] levels`.
    levels: list[Annotated[str, NonBlank(50)]] = Field(default_factory=list)
    allow_recent_buyers: bool = False
    id: Annotated[str, Chars(100)] | None = None
    created_at: Annotated[str, Chars(100)] | None = None
    updated_at: Annotated[str, Chars(100)] | None = None


class OfferPatch(OfferCreate):
    """Any of the fields; absent ones are unchanged."""

    trigger: Annotated[Trigger, Field(strict=False)] = ABSENT
    message: Message = ABSENT
