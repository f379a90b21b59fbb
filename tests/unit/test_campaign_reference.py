"""`decide` against a tiny reference written straight from SPEC section 4, on random facts.

The reference shares nothing with geopush's code but the input dataclasses: its own zone
fallback, its own window arithmetic in seconds, opening hours as a set of open minutes of
the week, its own hash. Domains are small so that every reason comes up often.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geopush.campaigns.decide import CampaignRules, Decision, DecisionFacts, EventFacts, decide
from geopush.campaigns.offers import Audience, DailyWindow, Offer, StoreInfo
from geopush.codes import EventType, Outcome, Segment, SuppressionReason, Trigger

ZONES = ["UTC", "America/Toronto", "Europe/Paris", "Asia/Tokyo", "America/Santiago", "Nope/Zone"]
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
CATEGORIES = ["a", "b", "c"]
MESSAGE = {"default_locale": "en", "translations": {"en": {"title": "t", "body": "b"}}}
BASE = datetime(2024, 3, 9, tzinfo=UTC)  # DST in Toronto and Paris come within the range


# --- the reference -------------------------------------------------------------------------------


def ref_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except Exception:
        return ZoneInfo("UTC")


def seconds_of_day(t: time) -> float:
    return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6


def ref_in_window(local: datetime, start: time, end: time) -> bool:
    """[start, end) on the clock; past midnight when end < start; empty when equal."""
    x, s, e = seconds_of_day(local.time()), seconds_of_day(start), seconds_of_day(end)
    if s == e:
        return False
    if s < e:
        return s <= x < e
    return not (e <= x < s)


def ref_is_open(hours: dict, local: datetime) -> bool:
    """Each interval as a range of minutes of the week; a week later too, for Sunday nights."""
    minute = local.weekday() * 1440 + local.hour * 60 + local.minute
    for day_index, day in enumerate(DAYS):
        for start, end in hours.get(day, []):
            s = int(start[:2]) * 60 + int(start[3:])
            e = 1440 if end == "24:00" else int(end[:2]) * 60 + int(end[3:])
            if e <= s:
                e += 1440
            first, last = day_index * 1440 + s, day_index * 1440 + e
            if first <= minute < last or first <= minute + 10080 < last:
                return True
    return False


def ref_reason(
    offer: Offer, event: EventFacts, facts: DecisionFacts, now: datetime, rules: CampaignRules
) -> SuppressionReason | None:
    device_tz = ref_zone(facts.timezone)
    store_tz = ref_zone(event.store.timezone) if event.store else device_tz
    if offer.starts_at and now < offer.starts_at:
        return SuppressionReason.OUTSIDE_SCHEDULE
    if offer.ends_at and not now < offer.ends_at:
        return SuppressionReason.OUTSIDE_SCHEDULE
    window = offer.daily_window
    if window and not ref_in_window(now.astimezone(store_tz), window.start, window.end):
        return SuppressionReason.OUTSIDE_SCHEDULE
    hours = event.store.opening_hours if event.store else None
    if hours is not None and not ref_is_open(hours, event.ts.astimezone(store_tz)):
        return SuppressionReason.STORE_CLOSED
    segment = facts.segment if facts.customer_id else Segment.UNKNOWN
    if offer.segments and segment not in offer.segments:
        return SuppressionReason.SEGMENT_MISMATCH
    if offer.levels and not any(level == facts.level for level in offer.levels):
        return SuppressionReason.LEVEL_MISMATCH
    if offer.audience:
        bought = facts.purchase_categories
        if offer.audience.bought_any and not any(c in bought for c in offer.audience.bought_any):
            return SuppressionReason.AUDIENCE_MISMATCH
        if any(c in bought for c in offer.audience.not_bought):
            return SuppressionReason.AUDIENCE_MISMATCH
    if (offer.category and offer.allow_recent_buyers is False
            and any(c == offer.category for c in facts.recent_categories)):
        return SuppressionReason.RECENTLY_BOUGHT
    if not facts.push_consent:
        return SuppressionReason.NO_PUSH_CONSENT
    consented = facts.consent_categories
    if offer.category and consented is not None and offer.category not in consented:
        return SuppressionReason.CATEGORY_OPT_OUT
    if offer.category and facts.interests is not None and offer.category not in facts.interests:
        return SuppressionReason.NOT_INTERESTED
    if (now - event.ts).total_seconds() > offer.ttl_s:
        return SuppressionReason.STALE_EVENT
    if offer.max_sends is not None and facts.offer_sends.get(offer.id, 0) >= offer.max_sends:
        return SuppressionReason.BUDGET_EXHAUSTED
    last = facts.last_contact.get(offer.id)
    if last is not None and (now - last).total_seconds() < offer.cooldown_s:
        return SuppressionReason.COOLDOWN
    if (offer.trigger == Trigger.FEEDBACK and facts.last_feedback is not None
            and (now - facts.last_feedback).total_seconds()
            < rules.feedback_min_days_between * 86_400):
        return SuppressionReason.FEEDBACK_RECENT
    local = event.ts.astimezone(device_tz)
    start, end = (rules.quiet_hours_start, rules.quiet_hours_end)
    if facts.quiet_hours is not None:
        start, end = facts.quiet_hours
    if ref_in_window(local, start, end):
        return SuppressionReason.QUIET_HOURS
    if facts.sent_today >= rules.daily_cap:
        return SuppressionReason.DAILY_CAP
    if facts.max_per_week is not None and not facts.sent_week < facts.max_per_week:
        return SuppressionReason.WEEKLY_PREFERENCE
    if offer.category and offer.category in facts.fatigued_categories:
        return SuppressionReason.FATIGUE
    if not facts.token_active:
        return SuppressionReason.NO_TOKEN
    return None


def ref_decide(
    event: EventFacts,
    offers: list[Offer],
    facts: DecisionFacts,
    now: datetime,
    rules: CampaignRules,
) -> list[Decision]:
    reasons = [ref_reason(o, event, facts, now, rules) for o in offers]
    passing = [o for o, r in zip(offers, reasons, strict=True) if r is None]
    passing.sort(key=lambda o: o.id)
    passing.sort(key=lambda o: o.created_at)
    passing.sort(key=lambda o: o.priority, reverse=True)
    winner = passing[0].id if passing else None
    subject = facts.customer_id or facts.device_id
    result = []
    for offer, reason in zip(offers, reasons, strict=True):
        if reason is not None:
            result.append(Decision(offer.id, Outcome.SUPPRESSED, reason))
        elif offer.id != winner:
            result.append(Decision(offer.id, Outcome.SUPPRESSED, SuppressionReason.LOWER_PRIORITY))
        else:
            digest = hashlib.sha256((subject + "\x00" + offer.id).encode("utf-8")).hexdigest()
            if int(digest[:16], 16) % 100 < offer.control_pct:
                result.append(Decision(offer.id, Outcome.CONTROL, SuppressionReason.CONTROL_GROUP))
            else:
                result.append(Decision(offer.id, Outcome.QUEUED, None))
    return result


# --- random facts ---------------------------------------------------------------------------
# Each scenario draws a `focus`. With a reason as focus, the facts behind that check are
# drawn freely (they fail about half the time) and every other fact takes its passing
# value: each reason, and the winner and control that follow when it passes, comes up in
# every run whatever Hypothesis' luck. Without focus, every fact is drawn freely one time in
# six, so reasons meet and the check order is exercised on random combinations. Durations
# are drawn right at the rules' edges (an age of 900 s for a ttl of 900) as often as not.
# Strategies are all built here, once: building them inside a draw costs Hypothesis a
# validation each time.


def near(*edges: int, low: int, high: int) -> st.SearchStrategy[int]:
    """An integer in [low, high], half the time an edge or one second off it."""
    around = sorted({e + d for e in edges for d in (-1, 0, 1)})
    return st.one_of(st.sampled_from(around), st.integers(low, high))


def clock() -> st.SearchStrategy[time]:
    """Few distinct times, so that `now` often falls exactly on a window's edge."""
    return st.builds(time, st.sampled_from([0, 2, 9, 12, 18, 21, 22]), st.sampled_from([0, 30]))


def hhmm(end: bool) -> st.SearchStrategy[str]:
    """Hypothesis favours the first values: a start at 12:00 and an end at 12:30 make the
    simplest store open half an hour a day, rather than 24 hours (00:00–00:00)."""
    hours = (12, 18, 21, 22, 0, 2, 8, 9)
    values = [f"{h:02d}:{m:02d}" for h in hours for m in ((30, 0) if end else (0, 30))]
    return st.sampled_from([*values, "24:00"] if end else values)


class Fact:
    """One fact behind the check `reason`: drawn from `free`, or its passing value `usual`."""

    def __init__(self, reason: SuppressionReason, free: st.SearchStrategy, usual: object) -> None:
        self.reason = reason
        self.free = free
        self.usual = usual
        self.mostly = st.tuples(st.integers(0, 5), free).map(lambda t: t[1] if t[0] == 0 else usual)

    def draw(self, draw: st.DrawFn, focus: SuppressionReason | None) -> Any:
        if focus is None:
            return draw(self.mostly)
        return draw(self.free) if focus == self.reason else self.usual


def per_offer(values: st.SearchStrategy[int]) -> st.SearchStrategy[dict[str, int]]:
    """Some of the offer ids, each with a value (cheaper than `dictionaries`' rejections)."""
    maybe = st.one_of(st.none(), values)
    return st.lists(maybe, min_size=len(IDS), max_size=len(IDS)).map(
        lambda vs: {i: v for i, v in zip(IDS, vs, strict=True) if v is not None}
    )


IDS = ["o1", "o2", "o3", "o4"]
categories = st.lists(st.booleans(), min_size=3, max_size=3).map(
    lambda picks: frozenset(c for c, picked in zip(CATEGORIES, picks, strict=True) if picked)
)
# Every day present with one or two intervals, half of them past midnight: open about half
# the time, through the same-day and the previous-night paths alike.
random_hours = st.fixed_dictionaries(
    {
        day: st.lists(st.tuples(hhmm(False), hhmm(True)).map(list), min_size=1, max_size=2)
        for day in DAYS
    }
)

S = SuppressionReason
LEVELS = ["bronze", "silver", "gold"]
FACT_REASONS = [r for r in SuppressionReason if r not in (S.LOWER_PRIORITY, S.CONTROL_GROUP)]
focuses = st.sampled_from([None] * 6 + FACT_REASONS)
# Days over a year (both DST changes of each zone), at the clock times windows use.
moments = st.builds(
    lambda day, at: BASE + timedelta(days=day, hours=at.hour, minutes=at.minute),
    st.integers(0, 400),
    clock(),
)
now_seconds = st.sampled_from([0, -1, 1, 900, 1799])  # mostly on the clock times
# Shifts from `now`: starts up to 3 days before (or 1 hour after), ends the other way round.
STARTS = Fact(S.OUTSIDE_SCHEDULE, near(0, low=-3600, high=3 * 86_400), None)
ENDS = Fact(S.OUTSIDE_SCHEDULE, near(0, low=-3600, high=3 * 86_400), None)
WINDOW = Fact(S.OUTSIDE_SCHEDULE, st.builds(DailyWindow, clock(), clock()), None)
HOURS = Fact(S.STORE_CLOSED, random_hours, None)
ANY = {
    "bool": st.booleans(),
    "order": st.permutations(IDS),
    "count": st.integers(1, 4),
    "days": st.integers(0, 1),
    "cooldown": st.sampled_from([0, 3600, 86_400]),
    "priority": st.integers(0, 1),
    "control": st.sampled_from([0, 10, 50]),
    "ttl": st.sampled_from([60, 900, 3600]),
    "store_zone": st.sampled_from(ZONES),
    "device": st.sampled_from(["d1", "d2"]),
    "customer": st.one_of(st.none(), st.sampled_from(["c1", "c2"])),
    "segment": st.sampled_from(list(Segment)),
    "level": st.one_of(st.none(), st.sampled_from(LEVELS)),
    "consent": st.one_of(st.none(), categories),
    "device_zone": st.sampled_from([*ZONES, ""]),
    "sends": per_offer(st.integers(0, 3)),
}
SEGMENTS = Fact(S.SEGMENT_MISMATCH, st.sets(st.sampled_from(list(Segment))).map(tuple), ())
OFFER_LEVELS = Fact(S.LEVEL_MISMATCH, st.sets(st.sampled_from(LEVELS)).map(tuple), ())
AUDIENCE = Fact(
    S.AUDIENCE_MISMATCH,
    st.builds(
        lambda any_, not_: Audience(tuple(sorted(any_)), tuple(sorted(not_ - any_))),
        categories,
        categories,
    ),
    None,
)
PUSH = Fact(S.NO_PUSH_CONSENT, st.booleans(), True)
CATEGORY = Fact(S.CATEGORY_OPT_OUT, st.sampled_from(CATEGORIES), None)
AGE = Fact(S.STALE_EVENT, near(0, 60, 900, 3600, low=-5, high=4000), 30)
MAX_SENDS = Fact(S.BUDGET_EXHAUSTED, st.integers(1, 3), None)
CONTACTS = Fact(S.COOLDOWN, per_offer(near(0, 3600, 86_400, low=-600, high=90_000)), {})
QUIET = Fact(S.QUIET_HOURS, st.tuples(clock(), clock()), (time(0), time(0)))
SENT_TODAY = Fact(S.DAILY_CAP, st.integers(0, 4), 0)
CAP = Fact(S.DAILY_CAP, st.integers(0, 4), 3)
TOKEN = Fact(S.NO_TOKEN, st.booleans(), True)
# SPEC section 14: a feedback offer, and the subject's last feedback request (seconds ago).
FEEDBACK_OFFER = Fact(S.FEEDBACK_RECENT, st.just(True), False)
LAST_FEEDBACK = Fact(S.FEEDBACK_RECENT, near(0, 14 * 86_400, low=-600, high=20 * 86_400), None)
RECENT = Fact(S.RECENTLY_BOUGHT, categories, frozenset())
ALLOW_RECENT = Fact(S.RECENTLY_BOUGHT, st.booleans(), False)
INTERESTS = Fact(S.NOT_INTERESTED, st.one_of(st.none(), categories), None)
PERSONAL_QUIET = Fact(S.QUIET_HOURS, st.one_of(st.none(), st.tuples(clock(), clock())), None)
WEEK_MAX = Fact(S.WEEKLY_PREFERENCE, st.one_of(st.none(), st.integers(0, 4)), None)
SENT_WEEK = Fact(S.WEEKLY_PREFERENCE, st.integers(0, 5), 0)
FATIGUED = Fact(S.FATIGUE, categories, frozenset())


@st.composite
def offers(draw: st.DrawFn, now: datetime, focus: S | None) -> list[Offer]:
    ids = draw(ANY["order"])[: draw(ANY["count"])]
    result = []
    for offer_id in ids:
        starts = STARTS.draw(draw, focus)
        ends = ENDS.draw(draw, focus)
        result.append(
            Offer(
                id=offer_id,
                trigger=Trigger.FEEDBACK if FEEDBACK_OFFER.draw(draw, focus) else Trigger.ENTER,
                message=MESSAGE,
                created_at=BASE - timedelta(days=draw(ANY["days"])),
                geofence_ids=("g1",),
                segments=SEGMENTS.draw(draw, focus),
                levels=OFFER_LEVELS.draw(draw, focus),
                category=CATEGORY.draw(draw, focus),
                audience=AUDIENCE.draw(draw, focus),
                starts_at=None if starts is None else now - timedelta(seconds=starts),
                ends_at=None if ends is None else now + timedelta(seconds=ends),
                daily_window=WINDOW.draw(draw, focus),
                cooldown_s=draw(ANY["cooldown"]),
                max_sends=MAX_SENDS.draw(draw, focus),
                priority=draw(ANY["priority"]),
                control_pct=50 if focus == S.CONTROL_GROUP else draw(ANY["control"]),
                ttl_s=draw(ANY["ttl"]),
                allow_recent_buyers=ALLOW_RECENT.draw(draw, focus),
            )
        )
    return result


@st.composite
def scenarios(
    draw: st.DrawFn, focus_from: st.SearchStrategy[SuppressionReason | None] = focuses
) -> tuple:
    focus = draw(focus_from)
    if focus in (S.RECENTLY_BOUGHT, S.NOT_INTERESTED, S.FATIGUE):
        focus_category: SuppressionReason | None = S.CATEGORY_OPT_OUT
    else:
        focus_category = focus
    now = draw(moments) + timedelta(seconds=draw(now_seconds))
    store = None
    if focus == S.STORE_CLOSED or draw(ANY["bool"]):
        hours = HOURS.draw(draw, focus)
        store = StoreInfo("s1", "Store", draw(ANY["store_zone"]), hours)
    age = AGE.draw(draw, focus)
    event = EventFacts(EventType.ENTER, "g1", store, now - timedelta(seconds=age))
    candidates = draw(offers(now, focus))
    if focus != focus_category:
        # These checks need an offer category: draw one as the opt-out focus would.
        candidates = [replace(o, category=CATEGORY.draw(draw, focus_category) or "a")
                      for o in candidates]
    contacts = CONTACTS.draw(draw, focus)
    last_feedback = LAST_FEEDBACK.draw(draw, focus)
    facts = DecisionFacts(
        device_id=draw(ANY["device"]),
        customer_id=draw(ANY["customer"]),
        segment=draw(ANY["segment"]),
        purchase_categories=draw(categories),
        push_consent=PUSH.draw(draw, focus),
        consent_categories=draw(categories if focus == S.CATEGORY_OPT_OUT else ANY["consent"]),
        timezone=draw(ANY["device_zone"]),
        token_active=TOKEN.draw(draw, focus),
        offer_sends=draw(ANY["sends"]),
        last_contact={oid: now - timedelta(seconds=a) for oid, a in contacts.items()},
        sent_today=SENT_TODAY.draw(draw, focus),
        level=draw(ANY["level"]),
        last_feedback=None if last_feedback is None else now - timedelta(seconds=last_feedback),
        recent_categories=RECENT.draw(draw, focus),
        interests=INTERESTS.draw(draw, focus),
        quiet_hours=PERSONAL_QUIET.draw(draw, focus),
        max_per_week=WEEK_MAX.draw(draw, focus),
        sent_week=SENT_WEEK.draw(draw, focus),
        fatigued_categories=FATIGUED.draw(draw, focus),
    )
    quiet_start, quiet_end = QUIET.draw(draw, focus)
    rules = CampaignRules(quiet_start, quiet_end, CAP.draw(draw, focus))
    return event, candidates, facts, now, rules


def check(scenario: tuple, seen: set[SuppressionReason | None]) -> None:
    event, candidates, facts, now, rules = scenario
    got = decide(event, candidates, facts, now, rules)
    assert got == ref_decide(event, candidates, facts, now, rules)
    assert sum(d.outcome != Outcome.SUPPRESSED for d in got) <= 1
    assert [d.offer_id for d in got] == [o.id for o in candidates]
    seen.update(d.reason for d in got)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_decide_matches_the_reference(scenario: tuple) -> None:
    check(scenario, set())


@pytest.mark.parametrize("focus", list(SuppressionReason), ids=str)
def test_each_reason_is_reached_and_matches(focus: SuppressionReason) -> None:
    """A fixed (derandomized) sample per reason, so that the comparison provably covers
    every reason without depending on luck. `lower_priority` and `control_group` belong to
    no fact: with them as focus every fact passes and the offers compete."""
    seen: set[SuppressionReason | None] = set()

    @settings(max_examples=25, deadline=None, derandomize=True, database=None)
    @given(scenarios(st.just(focus)))
    def compare(scenario: tuple) -> None:
        check(scenario, seen)

    compare()
    assert focus in seen
