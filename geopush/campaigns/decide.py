"""Which offer, if any, a visit event gets (SPEC section 4): pure values in, decisions out.

The caller gathers, in one query per batch, the candidate offers and the facts about the
device and its customer (`DecisionFacts`); `decide` applies the eligibility checks in the
SPEC's order, picks the highest-priority survivor and splits it into control or queued.
Keeping this free of I/O is what lets the tests pin every reason and the check order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from geopush.campaigns.errors import OfferError
from geopush.campaigns.offers import (
    Offer,
    StoreInfo,
    in_time_window,
)
from geopush.campaigns.opening_hours import is_open, parse_opening_hours
from geopush.codes import (
    EventType,
    OfferStatus,
    Outcome,
    Segment,
    SuppressionReason,
    Trigger,
)


@dataclass(frozen=True)
class EventFacts:
    """The visit event being decided on; `ts` is device time (SPEC 3), aware."""

    type: EventType
    geofence_id: str
    store: StoreInfo | None
    ts: datetime


@dataclass(frozen=True)
class DecisionFacts:
    """What is known of the device and its customer when the event is decided.

    Every field is a plain value the caller fetches in bulk:
    - `segment`: the customer's FRAT segment; ignored (taken as `unknown`) without customer.
    - `purchase_categories`: categories the customer bought (recommended: the FRAT lookback,
      the same set as the profile's `types`); empty without customer.
    - `recommended_categories`: the customer's recommended categories, best first, as the
      last basket-rules run left them (never mined here); empty without customer.
    - `consent_categories`: `None` means every category is consented to.
    - `timezone`: the device's IANA zone; an unknown name falls back to UTC.
    - `offer_sends`: per offer id, deliveries made so far (for `max_sends`).
    - `last_contact`: per offer id, the last time this subject (the customer on any of their
      devices, else this device) was queued or held out as control for that offer.
    - `sent_today`: geopush notifications the subject got since `local_day_start(now, tz)`.
    - `level`: the subject's loyalty level (SPEC 11); None when no candidate targets levels.
    - `recent_categories`: categories the customer bought within `[campaigns]
      recently_bought_days` (SPEC 15); empty without customer.
    - `interests`, `max_per_week`, `quiet_hours`: the subject's own preferences (SPEC 15);
      None where not given. Personal quiet hours replace the global ones.
    - `sent_week`: geopush notifications the subject got in the last 7 days (read only when
      `max_per_week` is set).
    - `fatigued_categories`: categories paused because their last `fatigue_after`
      notifications went unopened within `fatigue_days` (kept up to date as pushes are sent
      and opened, never scanned here).
    """

    device_id: str
    push_consent: bool
    token_active: bool
    customer_id: str | None = None
    segment: Segment = Segment.UNKNOWN
    purchase_categories: frozenset[str] = frozenset()
    recommended_categories: tuple[str, ...] = ()
    consent_categories: frozenset[str] | None = None
    timezone: str = "UTC"
    offer_sends: Mapping[str, int] = field(default_factory=dict, hash=False)
    last_contact: Mapping[str, datetime] = field(default_factory=dict, hash=False)
    sent_today: int = 0
    level: str | None = None
    # The last feedback request (any feedback offer) this subject was queued or held out
    # for (SPEC section 14); None: none within `[feedback] min_days_between`.
    last_feedback: datetime | None = None
    recent_categories: frozenset[str] = frozenset()
    interests: frozenset[str] | None = None
    max_per_week: int | None = None
    sent_week: int = 0
    quiet_hours: tuple[time, time] | None = None
    fatigued_categories: frozenset[str] = frozenset()


@dataclass(frozen=True)
class CampaignRules:
    """The `[campaigns]` settings the decision uses; quiet hours wrap midnight and
    `quiet_hours_start == quiet_hours_end` turns them off."""

    quiet_hours_start: time = time(21, 0)
    quiet_hours_end: time = time(9, 0)
    daily_cap: int = 3
    feedback_min_days_between: int = 14


@dataclass(frozen=True)
class Decision:
    """The fate of one candidate: `reason` is None only for a queued delivery."""

    offer_id: str
    outcome: Outcome
    reason: SuppressionReason | None


def candidate_offers(
    offers: Sequence[Offer],
    event_type: EventType | str,
    geofence_id: str,
    store_id: str | None,
    *,
    after_dwell: bool = False,
) -> list[Offer]:
    """The offers an event is decided on: active, with this trigger, targeting the geofence
    directly or through its store. Each offer once, in the given order.

    A `feedback` offer is a candidate for an `exit` that followed a dwell (`after_dwell`).
    """
    seen: set[str] = set()
    result: list[Offer] = []
    for offer in offers:
        if offer.id in seen or offer.status != OfferStatus.ACTIVE:
            continue
        feedback = (offer.trigger == Trigger.FEEDBACK and event_type == EventType.EXIT
                    and after_dwell)
        if offer.trigger != event_type and not feedback:
            continue
        if offer.trigger == Trigger.REWARD:
            # A reward answers the challenge naming it, wherever it was completed: the
            # caller passes only that challenge's offer.
            seen.add(offer.id)
            result.append(offer)
            continue
        if geofence_id in offer.geofence_ids or (
            store_id is not None and store_id in offer.store_ids
        ):
            seen.add(offer.id)
            result.append(offer)
    return result


def decide(
    event: EventFacts,
    candidates: Sequence[Offer],
    facts: DecisionFacts,
    now: datetime,
    rules: CampaignRules,
) -> list[Decision]:
    """One decision per candidate (in order; a repeated offer id is decided once), with at
    most one `queued` or `control`: one event gives at most one notification."""
    _require_aware(now, "now")
    _require_aware(event.ts, "event.ts")
    unique: dict[str, Offer] = {}
    for offer in candidates:
        unique.setdefault(offer.id, offer)
    reasons = {oid: check_offer(o, event, facts, now, rules) for oid, o in unique.items()}
    passing = [o for oid, o in unique.items() if reasons[oid] is None]
    winner = min(passing, key=priority_key, default=None)
    decisions: list[Decision] = []
    for oid, offer in unique.items():
        reason = reasons[oid]
        if reason is not None:
            decisions.append(Decision(oid, Outcome.SUPPRESSED, reason))
        elif offer is not winner:
            decisions.append(Decision(oid, Outcome.SUPPRESSED, SuppressionReason.LOWER_PRIORITY))
        elif control_bucket(subject_id(facts), oid) < offer.control_pct:
            decisions.append(Decision(oid, Outcome.CONTROL, SuppressionReason.CONTROL_GROUP))
        else:
            decisions.append(Decision(oid, Outcome.QUEUED, None))
    return decisions


def check_offer(
    offer: Offer,
    event: EventFacts,
    facts: DecisionFacts,
    now: datetime,
    rules: CampaignRules,
) -> SuppressionReason | None:
    """The first failing eligibility check of SPEC section 4, in its order, or None."""
    R = SuppressionReason
    device_zone = zone(facts.timezone)
    store_zone = zone(event.store.timezone) if event.store is not None else device_zone
    if not _in_schedule(offer, now, store_zone):
        return R.OUTSIDE_SCHEDULE
    if _store_closed(event, store_zone):
        return R.STORE_CLOSED
    segment = facts.segment if facts.customer_id is not None else Segment.UNKNOWN
    if offer.segments and segment not in offer.segments:
        return R.SEGMENT_MISMATCH
    if offer.levels and facts.level not in offer.levels:
        return R.LEVEL_MISMATCH
    if offer.audience is not None and not offer.audience.matches(
            facts.purchase_categories, facts.recommended_categories, offer.category):
        return R.AUDIENCE_MISMATCH
    if (offer.category is not None and not offer.allow_recent_buyers
            and offer.category in facts.recent_categories):
        return R.RECENTLY_BOUGHT
    if not facts.push_consent:
        return R.NO_PUSH_CONSENT
    if (
        offer.category is not None
        and facts.consent_categories is not None
        and offer.category not in facts.consent_categories
    ):
        return R.CATEGORY_OPT_OUT
    if (offer.category is not None and facts.interests is not None
            and offer.category not in facts.interests):
        return R.NOT_INTERESTED
    if now - event.ts > timedelta(seconds=offer.ttl_s):
        return R.STALE_EVENT
    if offer.max_sends is not None and facts.offer_sends.get(offer.id, 0) >= offer.max_sends:
        return R.BUDGET_EXHAUSTED
    last = facts.last_contact.get(offer.id)
    if last is not None and now - last < timedelta(seconds=offer.cooldown_s):
        return R.COOLDOWN
    if (offer.trigger == Trigger.FEEDBACK and facts.last_feedback is not None
            and now - facts.last_feedback < timedelta(days=rules.feedback_min_days_between)):
        return R.FEEDBACK_RECENT
    event_local = event.ts.astimezone(device_zone).time()
    quiet_start, quiet_end = facts.quiet_hours or (rules.quiet_hours_start,
                                                   rules.quiet_hours_end)
    if in_time_window(event_local, quiet_start, quiet_end):
        return R.QUIET_HOURS
    if facts.sent_today >= rules.daily_cap:
        return R.DAILY_CAP
    if facts.max_per_week is not None and facts.sent_week >= facts.max_per_week:
        return R.WEEKLY_PREFERENCE
    if offer.category is not None and offer.category in facts.fatigued_categories:
        return R.FATIGUE
    if not facts.token_active:
        return R.NO_TOKEN
    return None


def priority_key(offer: Offer) -> tuple[int, datetime, str]:
    """Sort key of the winner: highest priority, then the oldest offer, then the id (so the
    choice never depends on the order the database returned the rows in)."""
    return (-offer.priority, offer.created_at, offer.id)


def subject_id(facts: DecisionFacts) -> str:
    """Who cooldowns, caps and the control group are about: the customer, else the device."""
    return facts.customer_id if facts.customer_id is not None else facts.device_id


def control_bucket(subject: str, offer_id: str) -> int:
    """A stable bucket 0..99 of (subject, offer).

    sha256 of the UTF-8 of `subject + "\\0" + offer_id` (NUL cannot occur in a PostgreSQL
    text, so the pair is unambiguous), its first 8 bytes as a big-endian integer, mod 100.
    Any process, language or SQL (`get_byte(sha256(...))`) can recompute it; Python's hash()
    is salted per process and would move people between groups.
    """
    digest = hashlib.sha256(f"{subject}\0{offer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


@lru_cache(maxsize=1024)
def zone(name: str | None) -> ZoneInfo:
    """The IANA zone, or UTC when the name is missing or unknown (a device may send junk)."""
    if not name:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        return ZoneInfo("UTC")


def local_day_start(now: datetime, tz: str | None) -> datetime:
    """The first instant (UTC) of `now`'s calendar day in zone `tz`, for the daily cap.

    Usually local midnight; where a DST gap swallows midnight (America/Santiago, Havana) the
    day starts at the gap's end, and where midnight happens twice it is the first one.
    """
    _require_aware(now, "now")
    return _day_start(now, zone(tz))


def _day_start(now: datetime, local_zone: tzinfo) -> datetime:
    day = now.astimezone(local_zone).date()
    midnight = datetime(day.year, day.month, day.day)
    guess = midnight.replace(tzinfo=local_zone).astimezone(UTC)  # fold=0: the first midnight
    if guess.astimezone(local_zone).replace(tzinfo=None) == midnight:
        return guess
    # Midnight falls in a DST gap. fold=0 read it with the offset before the gap, which is
    # the gap's start when the gap starts at midnight (every real zone, 1970–2037); for a gap
    # starting earlier, search the first whole second (transitions fall on whole seconds)
    # whose local date is `day`. Six hours before the guess is surely still the day before.
    low, high = int(guess.timestamp()) - 6 * 3600, int(guess.timestamp())
    while high - low > 1:
        mid = (low + high) // 2
        if datetime.fromtimestamp(mid, local_zone).date() >= day:
            high = mid
        else:
            low = mid
    return datetime.fromtimestamp(high, UTC)


def _in_schedule(offer: Offer, now: datetime, store_zone: ZoneInfo) -> bool:
    """[starts_at, ends_at) and the daily window, both at decision time (`now`)."""
    if offer.starts_at is not None and now < offer.starts_at:
        return False
    if offer.ends_at is not None and now >= offer.ends_at:
        return False
    if offer.daily_window is None:
        return True
    return offer.daily_window.contains(now.astimezone(store_zone).time())


def _store_closed(event: EventFacts, store_zone: ZoneInfo) -> bool:
    """Closed at the event time; hours that fail validation count as unknown (open), so a
    bad row never stops a whole ping batch."""
    if event.store is None or event.store.opening_hours is None:
        return False
    try:
        hours = parse_opening_hours(event.store.opening_hours)
    except OfferError:
        return False
    if hours is None:
        return False
    return not is_open(hours, event.ts.astimezone(store_zone))


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime")
