"""The offer decision of SPEC section 4: every suppression reason, the check order, the
winner, the control group, windows across midnight and DST days; and the offer and opening
hours validation that feeds it."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest

from geopush.campaigns.decide import (
    CampaignRules,
    Decision,
    DecisionFacts,
    EventFacts,
    _day_start,
    candidate_offers,
    check_offer,
    control_bucket,
    decide,
    local_day_start,
    zone,
)
from geopush.campaigns.offers import (
    Audience,
    DailyWindow,
    Offer,
    OfferError,
    StoreInfo,
    in_time_window,
    offer_from_json,
    offer_to_json,
    parse_offer_fields,
    validate_offer,
)
from geopush.campaigns.opening_hours import is_open, parse_opening_hours
from geopush.codes import EventType, OfferStatus, Outcome, Segment, SuppressionReason, Trigger

R = SuppressionReason
TORONTO = "America/Toronto"
# A Tuesday, 12:00 in Toronto (EDT, UTC−4).
NOW = datetime(2025, 6, 10, 16, 0, tzinfo=UTC)
MESSAGE = {
    "default_locale": "en",
    "translations": {"en": {"title": "Hi {first_name}", "body": "Welcome to {store_name}"}},
}
ALL_WEEK = {day: [["08:00", "21:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def make_offer(offer_id: str = "o1", **changes: object) -> Offer:
    """An offer that the baseline facts pass, with every optional rule switched on."""
    base = Offer(
        id=offer_id,
        trigger=Trigger.ENTER,
        message=MESSAGE,
        created_at=datetime(2025, 1, 1, tzinfo=UTC),
        geofence_ids=("g1",),
        store_ids=(),
        segments=(Segment.GOOD, Segment.BEST),
        levels=("silver", "gold"),
        category="food",
        audience=Audience(bought_any=("bakery",), not_bought=("wine",)),
        starts_at=NOW - timedelta(days=1),
        ends_at=NOW + timedelta(days=1),
        daily_window=DailyWindow(time(10, 0), time(14, 0)),
        cooldown_s=3600,
        max_sends=10,
        priority=0,
        control_pct=0,
        ttl_s=900,
    )
    return replace(base, **changes)


@dataclass(frozen=True)
class Scenario:
    offer: Offer
    event: EventFacts
    facts: DecisionFacts
    now: datetime = NOW
    rules: CampaignRules = field(default_factory=CampaignRules)

    def reason(self) -> SuppressionReason | None:
        [decision] = decide(self.event, [self.offer], self.facts, self.now, self.rules)
        return decision.reason


def baseline() -> Scenario:
    store = StoreInfo(id="s1", name="Rue Saint-Denis", timezone=TORONTO, opening_hours=ALL_WEEK)
    return Scenario(
        offer=make_offer(),
        event=EventFacts(
            type=EventType.ENTER, geofence_id="g1", store=store, ts=NOW - timedelta(seconds=60)
        ),
        facts=DecisionFacts(
            device_id="d1",
            customer_id="c1",
            segment=Segment.GOOD,
            purchase_categories=frozenset({"bakery"}),
            push_consent=True,
            consent_categories=frozenset({"food"}),
            timezone=TORONTO,
            token_active=True,
            offer_sends={"o1": 9},
            last_contact={"o1": NOW - timedelta(hours=2)},
            sent_today=2,
            level="silver",
            interests=frozenset({"food", "toys"}),
            max_per_week=5,
            sent_week=4,
        ),
    )


def at_time(s: Scenario, now: datetime) -> Scenario:
    """The scenario moved to another day: event at `now`, no schedule, no past contact."""
    return replace(
        s,
        now=now,
        event=replace(s.event, ts=now),
        offer=replace(s.offer, starts_at=None, ends_at=None),
        facts=replace(s.facts, last_contact={}),
    )


def with_offer(**changes: object) -> Callable[[Scenario], Scenario]:
    return lambda s: replace(s, offer=replace(s.offer, **changes))


def with_facts(**changes: object) -> Callable[[Scenario], Scenario]:
    return lambda s: replace(s, facts=replace(s.facts, **changes))


def with_event(**changes: object) -> Callable[[Scenario], Scenario]:
    return lambda s: replace(s, event=replace(s.event, **changes))


def with_store(**changes: object) -> Callable[[Scenario], Scenario]:
    def change(s: Scenario) -> Scenario:
        assert s.event.store is not None
        return replace(s, event=replace(s.event, store=replace(s.event.store, **changes)))

    return change


# One change per reason that makes exactly that check fail, in SPEC order. They touch
# different facts, so any two compose.
BREAKERS: dict[SuppressionReason, Callable[[Scenario], Scenario]] = {
    R.OUTSIDE_SCHEDULE: with_offer(starts_at=NOW + timedelta(seconds=1)),
    R.STORE_CLOSED: with_store(opening_hours={"tue": [["13:00", "21:00"]]}),
    R.SEGMENT_MISMATCH: with_facts(segment=Segment.AT_RISK),
    R.LEVEL_MISMATCH: with_facts(level="bronze"),
    R.AUDIENCE_MISMATCH: with_facts(purchase_categories=frozenset({"bakery", "wine"})),
    R.RECENTLY_BOUGHT: with_facts(recent_categories=frozenset({"food"})),
    R.NO_PUSH_CONSENT: with_facts(push_consent=False),
    R.CATEGORY_OPT_OUT: with_facts(consent_categories=frozenset({"fashion"})),
    R.NOT_INTERESTED: with_facts(interests=frozenset({"toys"})),
    R.STALE_EVENT: with_event(ts=NOW - timedelta(seconds=901)),
    R.BUDGET_EXHAUSTED: with_facts(offer_sends={"o1": 10}),
    R.COOLDOWN: with_facts(last_contact={"o1": NOW - timedelta(seconds=3599)}),
    R.QUIET_HOURS: with_facts(timezone="Asia/Tokyo"),  # 00:59 there
    R.DAILY_CAP: with_facts(sent_today=3),
    R.WEEKLY_PREFERENCE: with_facts(sent_week=5),
    R.FATIGUE: with_facts(fatigued_categories=frozenset({"food", "toys"})),
    R.NO_TOKEN: with_facts(token_active=False),
}
CHECK_ORDER = list(BREAKERS)


def test_breakers_follow_the_order_of_the_enum() -> None:
    assert list(SuppressionReason)[: len(CHECK_ORDER)] == CHECK_ORDER


def test_baseline_is_queued() -> None:
    s = baseline()
    assert decide(s.event, [s.offer], s.facts, s.now, s.rules) == [
        Decision("o1", Outcome.QUEUED, None)
    ]


@pytest.mark.parametrize("reason", CHECK_ORDER)
def test_each_reason_alone(reason: SuppressionReason) -> None:
    s = BREAKERS[reason](baseline())
    [decision] = decide(s.event, [s.offer], s.facts, s.now, s.rules)
    assert decision == Decision("o1", Outcome.SUPPRESSED, reason)


@pytest.mark.parametrize(
    ("first", "second"),
    list(itertools.combinations(CHECK_ORDER, 2)),
    ids=lambda r: str(r),
)
def test_the_earlier_check_wins(first: SuppressionReason, second: SuppressionReason) -> None:
    s = BREAKERS[second](BREAKERS[first](baseline()))
    assert s.reason() == first
    s = BREAKERS[first](BREAKERS[second](baseline()))
    assert s.reason() == first


# --- each rule's edges -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (with_offer(starts_at=NOW), None),  # [starts_at, ...
        (with_offer(ends_at=NOW), R.OUTSIDE_SCHEDULE),  # ..., ends_at)
        (with_offer(ends_at=NOW + timedelta(microseconds=1)), None),
        (with_offer(starts_at=None, ends_at=None, daily_window=None), None),
        (with_offer(daily_window=DailyWindow(time(12, 0), time(13, 0))), None),
        (with_offer(daily_window=DailyWindow(time(11, 0), time(12, 0))), R.OUTSIDE_SCHEDULE),
        # The window is read at decision time, in the store's zone: 12:00 in Toronto.
        (with_store(timezone="Europe/Paris"), R.OUTSIDE_SCHEDULE),  # 18:00 in Paris
        # An unknown store zone falls back to UTC: 16:00.
        (with_store(timezone="Mars/Olympus"), R.OUTSIDE_SCHEDULE),
    ],
)
def test_schedule(change: Callable[[Scenario], Scenario], reason: R | None) -> None:
    assert change(baseline()).reason() == reason


def test_daily_window_without_store_uses_the_device_zone() -> None:
    s = with_event(store=None)(baseline())
    assert s.reason() is None  # 12:00 in the device's Toronto
    assert with_facts(timezone="Europe/Paris")(s).reason() == R.OUTSIDE_SCHEDULE


@pytest.mark.parametrize(
    ("hours", "reason"),
    [
        (None, None),
        ({"tue": [["08:00", "11:59"]]}, R.STORE_CLOSED),  # the event is at 11:59:00
        ({"tue": [["08:00", "12:00"]]}, None),
        ({"tue": [["11:59", "12:00"]]}, None),
        ({"mon": [["08:00", "21:00"]]}, R.STORE_CLOSED),  # a day left out is closed
        ({"tue": []}, R.STORE_CLOSED),
        ({"tue": [["06:00", "07:00"], ["11:00", "13:00"]]}, None),
        ({"mon": [["20:00", "12:00"]]}, None),  # Monday's night runs into Tuesday noon
        ({"mon": [["20:00", "11:59"]]}, R.STORE_CLOSED),
        ({"tue": [["00:00", "24:00"]]}, None),
        ({"tue": [["12:00", "12:00"]]}, R.STORE_CLOSED),  # 24 h from noon
        ({"mon": [["12:00", "12:00"]]}, None),  # 24 h from Monday noon
        ({"tue": "always"}, None),  # hours that fail validation never close a store
    ],
)
def test_store_closed_at_event_time(hours: dict | None, reason: R | None) -> None:
    assert with_store(opening_hours=hours)(baseline()).reason() == reason


def test_store_closed_uses_event_time_not_now() -> None:
    s = with_store(opening_hours={"tue": [["11:00", "11:30"]]})(baseline())
    s = with_offer(ttl_s=3600)(s)
    assert s.reason() == R.STORE_CLOSED
    assert with_event(ts=NOW - timedelta(minutes=45))(s).reason() is None  # 11:15


@pytest.mark.parametrize(
    ("segments", "customer", "segment", "reason"),
    [
        ((), "c1", Segment.INACTIVE, None),
        ((Segment.BEST,), "c1", Segment.BEST, None),
        ((Segment.BEST,), "c1", Segment.GOOD, R.SEGMENT_MISMATCH),
        ((Segment.UNKNOWN,), None, Segment.UNKNOWN, None),
        ((Segment.GOOD,), None, Segment.GOOD, R.SEGMENT_MISMATCH),  # no customer → unknown
        (("good",), "c1", Segment.GOOD, None),  # plain strings from the database
    ],
)
def test_segments(segments: tuple, customer: str | None, segment: Segment, reason: R) -> None:
    s = with_offer(segments=segments)(baseline())
    s = with_facts(customer_id=customer, segment=segment)(s)
    assert s.reason() == reason


@pytest.mark.parametrize(
    ("audience", "bought", "reason"),
    [
        (None, set(), None),
        (Audience(bought_any=("a", "b")), {"b"}, None),
        (Audience(bought_any=("a", "b")), {"c"}, R.AUDIENCE_MISMATCH),
        (Audience(bought_any=("a",)), set(), R.AUDIENCE_MISMATCH),
        (Audience(not_bought=("a", "b")), {"c"}, None),
        (Audience(not_bought=("a", "b")), set(), None),
        (Audience(not_bought=("a", "b")), {"c", "b"}, R.AUDIENCE_MISMATCH),
        (Audience(bought_any=("a",), not_bought=("b",)), {"a"}, None),
        (Audience(bought_any=("a",), not_bought=("b",)), {"a", "b"}, R.AUDIENCE_MISMATCH),
    ],
)
def test_audience(audience: Audience | None, bought: set[str], reason: R | None) -> None:
    s = with_offer(audience=audience)(baseline())
    assert with_facts(purchase_categories=frozenset(bought))(s).reason() == reason


@pytest.mark.parametrize(
    ("category", "consented", "reason"),
    [
        (None, frozenset(), None),
        ("food", None, None),  # null = every category
        ("food", frozenset(), R.CATEGORY_OPT_OUT),
        ("food", frozenset({"food", "fashion"}), None),
    ],
)
def test_category(category: str | None, consented: frozenset | None, reason: R | None) -> None:
    s = with_offer(category=category)(baseline())
    assert with_facts(consent_categories=consented)(s).reason() == reason


def test_stale_event_edge() -> None:
    assert with_event(ts=NOW - timedelta(seconds=900))(baseline()).reason() is None
    s = with_event(ts=NOW - timedelta(seconds=900, microseconds=1))(baseline())
    assert s.reason() == R.STALE_EVENT


def test_budget() -> None:
    assert with_offer(max_sends=None)(BREAKERS[R.BUDGET_EXHAUSTED](baseline())).reason() is None
    assert with_facts(offer_sends={})(baseline()).reason() is None
    assert with_facts(offer_sends={"o1": 11})(baseline()).reason() == R.BUDGET_EXHAUSTED
    assert with_facts(offer_sends={"other": 99})(baseline()).reason() is None


def test_cooldown_edges() -> None:
    assert with_facts(last_contact={"o1": NOW - timedelta(hours=1)})(baseline()).reason() is None
    assert with_facts(last_contact={})(baseline()).reason() is None
    assert with_facts(last_contact={"o2": NOW})(baseline()).reason() is None
    s = with_offer(cooldown_s=0)(with_facts(last_contact={"o1": NOW})(baseline()))
    assert s.reason() is None
    future = with_facts(last_contact={"o1": NOW + timedelta(minutes=5)})(baseline())
    assert future.reason() == R.COOLDOWN  # clock skew never reopens an offer early


@pytest.mark.parametrize(
    ("device_tz", "rules", "reason"),
    [
        ("Asia/Tokyo", CampaignRules(), R.QUIET_HOURS),  # 00:59
        ("Europe/Paris", CampaignRules(), None),  # 17:59
        ("Europe/Paris", CampaignRules(quiet_hours_start=time(17, 59)), R.QUIET_HOURS),
        ("Europe/Paris", CampaignRules(quiet_hours_start=time(18, 0)), None),
        ("UTC", CampaignRules(quiet_hours_start=time(13), quiet_hours_end=time(16)), R.QUIET_HOURS),
        ("UTC", CampaignRules(quiet_hours_start=time(13), quiet_hours_end=time(15, 59)), None),
        ("Asia/Tokyo", CampaignRules(quiet_hours_start=time(9), quiet_hours_end=time(9)), None),
        (
            "Bad/Zone",
            CampaignRules(quiet_hours_start=time(15), quiet_hours_end=time(16)),
            R.QUIET_HOURS,
        ),
        ("", CampaignRules(quiet_hours_start=time(15), quiet_hours_end=time(16)), R.QUIET_HOURS),
    ],
)
def test_quiet_hours(device_tz: str, rules: CampaignRules, reason: R | None) -> None:
    s = replace(with_facts(timezone=device_tz)(baseline()), rules=rules)
    assert s.reason() == reason


def test_quiet_hours_use_event_time_not_now() -> None:
    # Event at 20:59 device time, decided at 21:05: not quiet (the event is what counts).
    s = with_facts(timezone="UTC")(baseline())
    s = replace(
        s,
        now=datetime(2025, 6, 10, 21, 5, tzinfo=UTC),
        offer=make_offer(starts_at=None, ends_at=None, daily_window=None),
    )
    s = with_event(ts=datetime(2025, 6, 10, 20, 59, tzinfo=UTC), store=None)(s)
    assert s.reason() is None
    s = with_event(ts=datetime(2025, 6, 10, 21, 0, tzinfo=UTC))(s)
    assert s.reason() == R.QUIET_HOURS


def test_daily_cap() -> None:
    assert with_facts(sent_today=0)(baseline()).reason() is None
    assert with_facts(sent_today=4)(baseline()).reason() == R.DAILY_CAP
    s = replace(baseline(), rules=CampaignRules(daily_cap=0))
    assert with_facts(sent_today=0)(s).reason() == R.DAILY_CAP


def test_naive_times_are_refused() -> None:
    s = baseline()
    with pytest.raises(ValueError, match="aware"):
        decide(s.event, [s.offer], s.facts, NOW.replace(tzinfo=None), s.rules)


# --- winner, priority, control -------------------------------------------------------------


def decide_many(offers: list[Offer], facts: DecisionFacts | None = None) -> list[Decision]:
    s = baseline()
    facts = facts or replace(s.facts, offer_sends={}, last_contact={})
    return decide(s.event, offers, facts, s.now, s.rules)


def test_highest_priority_wins_and_the_others_are_lower_priority() -> None:
    offers = [make_offer("a", priority=1), make_offer("b", priority=5), make_offer("c")]
    assert decide_many(offers) == [
        Decision("a", Outcome.SUPPRESSED, R.LOWER_PRIORITY),
        Decision("b", Outcome.QUEUED, None),
        Decision("c", Outcome.SUPPRESSED, R.LOWER_PRIORITY),
    ]


def test_priority_ties_go_to_the_oldest_then_the_smallest_id() -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    offers = [
        make_offer("z", priority=2, created_at=t0 + timedelta(days=1)),
        make_offer("y", priority=2, created_at=t0),
        make_offer("x", priority=2, created_at=t0 + timedelta(days=1)),
    ]
    outcomes = {d.offer_id: d.outcome for d in decide_many(offers)}
    assert outcomes == {"z": Outcome.SUPPRESSED, "y": Outcome.QUEUED, "x": Outcome.SUPPRESSED}
    offers = [replace(o, created_at=t0) for o in offers]
    for order in itertools.permutations(offers):
        winners = [d.offer_id for d in decide_many(list(order)) if d.reason is None]
        assert winners == ["x"]


def test_a_suppressed_offer_never_wins_and_never_says_lower_priority() -> None:
    offers = [make_offer("a", priority=9, category="wine"), make_offer("b", priority=1)]
    assert decide_many(offers) == [
        Decision("a", Outcome.SUPPRESSED, R.CATEGORY_OPT_OUT),
        Decision("b", Outcome.QUEUED, None),
    ]


def test_no_candidate_and_all_suppressed() -> None:
    assert decide_many([]) == []
    facts = replace(baseline().facts, push_consent=False)
    decisions = decide_many([make_offer("a"), make_offer("b")], facts)
    assert {d.reason for d in decisions} == {R.NO_PUSH_CONSENT}


def test_a_repeated_offer_is_decided_once() -> None:
    assert decide_many([make_offer("a"), make_offer("a")]) == [Decision("a", Outcome.QUEUED, None)]


def test_offer_state_is_per_offer() -> None:
    facts = replace(baseline().facts, offer_sends={"a": 10}, last_contact={"b": NOW})
    decisions = decide_many([make_offer("a"), make_offer("b"), make_offer("c")], facts)
    assert [d.reason for d in decisions] == [R.BUDGET_EXHAUSTED, R.COOLDOWN, None]


def test_control_bucket_is_a_pinned_sha256() -> None:
    # Pinned values: changing the hash would silently move customers between groups.
    assert control_bucket("c1", "o1") == 41
    assert control_bucket("device-42", "offer-7") == 54
    assert control_bucket("é", "x") == 25
    digest = hashlib.sha256(b"c1\x00o1").digest()
    assert control_bucket("c1", "o1") == int.from_bytes(digest[:8], "big") % 100


@pytest.mark.parametrize("pct", [0, 1, 10, 25, 50])
def test_control_share_is_close_to_control_pct(pct: int) -> None:
    held = sum(control_bucket(f"customer-{i}", "offer-1") < pct for i in range(10_000))
    assert abs(held / 10_000 - pct / 100) < 0.02


def test_control_group_holds_the_winner_out() -> None:
    s = baseline()
    facts = replace(s.facts, customer_id="c1", offer_sends={}, last_contact={})
    bucket = control_bucket("c1", "a")
    held = make_offer("a", priority=3, control_pct=bucket + 1)
    assert decide_many([held, make_offer("b")], facts) == [
        Decision("a", Outcome.CONTROL, R.CONTROL_GROUP),
        Decision("b", Outcome.SUPPRESSED, R.LOWER_PRIORITY),
    ]
    sent = replace(held, control_pct=bucket)
    assert decide_many([sent], facts) == [Decision("a", Outcome.QUEUED, None)]


def test_control_subject_is_the_customer_else_the_device() -> None:
    facts = replace(baseline().facts, offer_sends={}, last_contact={})
    # Find a customer and a device whose buckets sit on different sides of 50.
    customer = next(f"c{i}" for i in range(1000) if control_bucket(f"c{i}", "a") < 50)
    device = next(f"d{i}" for i in range(1000) if control_bucket(f"d{i}", "a") >= 50)
    offer = make_offer("a", control_pct=50)
    known = replace(facts, customer_id=customer, device_id=device)
    anonymous = replace(facts, customer_id=None, device_id=device, segment=Segment.UNKNOWN)
    assert decide_many([offer], known)[0].outcome == Outcome.CONTROL
    assert decide_many([replace(offer, segments=())], anonymous)[0].outcome == Outcome.QUEUED


# --- candidates --------------------------------------------------------------------------------


def test_candidate_offers() -> None:
    offers = [
        make_offer("direct", geofence_ids=("g1",)),
        make_offer("via-store", geofence_ids=(), store_ids=("s1",)),
        make_offer("paused", status=OfferStatus.PAUSED),
        make_offer("dwell", trigger=Trigger.DWELL),
        make_offer("elsewhere", geofence_ids=("g2",), store_ids=("s2",)),
        make_offer("both", geofence_ids=("g1",), store_ids=("s1",)),
        make_offer("direct"),
    ]
    found = candidate_offers(offers, EventType.ENTER, "g1", "s1")
    assert [o.id for o in found] == ["direct", "via-store", "both"]
    assert [o.id for o in candidate_offers(offers, "enter", "g1", None)] == ["direct", "both"]
    assert [o.id for o in candidate_offers(offers, EventType.DWELL, "g1", None)] == ["dwell"]


# --- windows across midnight, DST --------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "inside", "outside"),
    [
        (
            time(22),
            time(2),
            [time(22), time(23, 59, 59), time(0), time(1, 59, 59)],
            [time(2), time(21, 59, 59), time(12)],
        ),
        (time(9), time(17), [time(9), time(16, 59, 59)], [time(17), time(8, 59), time(23)]),
        (time(18), time(0), [time(18), time(23, 59, 59, 999999)], [time(0), time(17, 59)]),
        (time(5), time(5), [], [time(5), time(4, 59), time(12)]),
    ],
)
def test_time_windows_wrap_midnight(
    start: time, end: time, inside: list[time], outside: list[time]
) -> None:
    for t in inside:
        assert in_time_window(t, start, end), t
        assert DailyWindow(start, end).contains(t), t
    for t in outside:
        assert not in_time_window(t, start, end), t


def test_daily_window_across_midnight_in_decide() -> None:
    s = with_offer(daily_window=DailyWindow(time(22), time(2)), starts_at=None, ends_at=None)(
        with_store(opening_hours=None)(baseline())
    )
    for local_hour, reason in [
        (23, None),
        (1, None),
        (2, R.OUTSIDE_SCHEDULE),
        (21, R.OUTSIDE_SCHEDULE),
    ]:
        now = datetime(2025, 6, 10, local_hour, 30, tzinfo=ZoneInfo(TORONTO))
        at = with_facts(timezone="UTC")(at_time(s, now))
        at = replace(at, rules=CampaignRules(quiet_hours_start=time(0), quiet_hours_end=time(0)))
        assert at.reason() == reason, local_hour


def test_opening_hours_past_midnight_into_the_next_week() -> None:
    hours = parse_opening_hours({"sun": [["20:00", "02:00"]]})
    assert hours is not None
    assert is_open(hours, datetime(2025, 6, 15, 23, 0))  # Sunday
    assert is_open(hours, datetime(2025, 6, 16, 1, 59))  # Monday, still Sunday's night
    assert not is_open(hours, datetime(2025, 6, 16, 2, 0))
    assert not is_open(hours, datetime(2025, 6, 15, 1, 0))  # Sunday early: Saturday closed


def test_quiet_hours_on_dst_days() -> None:
    s = with_offer(starts_at=None, ends_at=None, daily_window=None)(
        with_store(opening_hours=None)(baseline())
    )
    # 13:30 UTC is 08:30 EST the day before spring forward, 09:30 EDT on it.
    for day, reason in [(9, R.QUIET_HOURS), (10, None)]:
        ts = datetime(2024, 3, day, 13, 30, tzinfo=UTC)
        assert at_time(s, ts).reason() == reason, day
    # Fall back: 13:30 UTC is 09:30 EDT on Nov 2, 08:30 EST on Nov 3.
    for day, reason in [(2, None), (3, R.QUIET_HOURS)]:
        ts = datetime(2024, 11, day, 13, 30, tzinfo=UTC)
        assert at_time(s, ts).reason() == reason, day


def test_opening_hours_on_dst_days_follow_the_wall_clock() -> None:
    s = with_offer(starts_at=None, ends_at=None, daily_window=None)(baseline())
    s = with_store(opening_hours={d: [["09:00", "17:00"]] for d in ("sat", "sun")})(s)
    s = with_facts(timezone="UTC")(s)
    s = replace(s, rules=CampaignRules(quiet_hours_start=time(0), quiet_hours_end=time(0)))
    for day, reason in [(2, None), (3, R.STORE_CLOSED)]:  # 09:30 EDT, then 08:30 EST
        ts = datetime(2024, 11, day, 13, 30, tzinfo=UTC)
        assert at_time(s, ts).reason() == reason, day


@pytest.mark.parametrize(
    ("tz", "now", "start"),
    [
        (TORONTO, datetime(2024, 3, 10, 15, tzinfo=UTC), datetime(2024, 3, 10, 5, tzinfo=UTC)),
        (TORONTO, datetime(2024, 11, 3, 15, tzinfo=UTC), datetime(2024, 11, 3, 4, tzinfo=UTC)),
        (TORONTO, datetime(2024, 11, 4, 3, 59, tzinfo=UTC), datetime(2024, 11, 3, 4, tzinfo=UTC)),
        # Midnight does not exist: the day starts at 01:00 local, the end of the gap.
        (
            "America/Santiago",
            datetime(2022, 9, 11, 12, tzinfo=UTC),
            datetime(2022, 9, 11, 4, tzinfo=UTC),
        ),
        (
            "America/Havana",
            datetime(2024, 3, 10, 15, tzinfo=UTC),
            datetime(2024, 3, 10, 5, tzinfo=UTC),
        ),
        # Midnight happens twice (01:00 → 00:00): the first one.
        (
            "America/Havana",
            datetime(2024, 11, 3, 15, tzinfo=UTC),
            datetime(2024, 11, 3, 4, tzinfo=UTC),
        ),
        (
            "Asia/Kolkata",
            datetime(2025, 6, 10, 20, tzinfo=UTC),
            datetime(2025, 6, 10, 18, 30, tzinfo=UTC),
        ),
        ("Not/AZone", datetime(2025, 6, 10, 20, tzinfo=UTC), datetime(2025, 6, 10, tzinfo=UTC)),
    ],
)
def test_local_day_start(tz: str, now: datetime, start: datetime) -> None:
    got = local_day_start(now, tz)
    assert got == start
    assert got.tzinfo is not None and got.utcoffset() == timedelta(0)
    local = zone(tz)
    assert got.astimezone(local).date() == now.astimezone(local).date()
    assert (got - timedelta(seconds=1)).astimezone(local).date() < now.astimezone(local).date()


class _GapBeforeMidnight(tzinfo):
    """A zone whose clocks jump from 23:30 to 00:30 on 2030-03-10 (UTC+0 → UTC+1): no real
    zone does this today, but the day-start search must still find 00:30."""

    _switch = datetime(2030, 3, 9, 23, 30)  # UTC, naive

    def utcoffset(self, dt: datetime | None) -> timedelta:
        assert dt is not None
        wall = dt.replace(tzinfo=None)
        if wall < self._switch:
            return timedelta(0)
        if wall >= self._switch + timedelta(hours=1):
            return timedelta(hours=1)
        return timedelta(hours=dt.fold)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def tzname(self, dt: datetime | None) -> str:
        return "GAP"

    def fromutc(self, dt: datetime) -> datetime:
        utc = dt.replace(tzinfo=None)
        offset = timedelta(0) if utc < self._switch else timedelta(hours=1)
        return (utc + offset).replace(tzinfo=self)


def test_day_start_when_a_gap_starts_before_midnight() -> None:
    gap = _GapBeforeMidnight()
    start = _day_start(datetime(2030, 3, 10, 12, tzinfo=UTC), gap)
    assert start == datetime(2030, 3, 9, 23, 30, tzinfo=UTC)
    assert start.astimezone(gap).replace(tzinfo=None) == datetime(2030, 3, 10, 0, 30)


def test_check_offer_is_the_single_offer_chain() -> None:
    s = BREAKERS[R.COOLDOWN](baseline())
    assert check_offer(s.offer, s.event, s.facts, s.now, s.rules) == R.COOLDOWN


# --- offer fields --------------------------------------------------------------------------------

VALID_BODY: dict = {
    "trigger": "dwell",
    "store_ids": ["s1"],
    "message": MESSAGE,
}


def parse_error(body: dict, partial: bool = False) -> OfferError:
    with pytest.raises(OfferError) as caught:
        parse_offer_fields(body, partial)
    return caught.value


def test_a_minimal_offer_gets_the_spec_defaults() -> None:
    fields = parse_offer_fields(VALID_BODY, partial=False)
    offer = Offer(id="o9", created_at=NOW, **fields)
    assert offer.trigger is Trigger.DWELL
    assert offer.store_ids == ("s1",) and offer.geofence_ids == ()
    assert (offer.cooldown_s, offer.priority, offer.control_pct, offer.ttl_s) == (86400, 0, 0, 900)
    assert offer.status is OfferStatus.ACTIVE
    assert offer.segments == () and offer.audience is None and offer.max_sends is None


def test_a_full_offer_round_trips() -> None:
    body = {
        **VALID_BODY,
        "name": "Croissant morning",
        "geofence_ids": ["g1", "g2", "g1"],
        "segments": ["best", "at_risk"],
        "category": "food",
        "audience": {"bought_any": ["bakery"], "not_bought": ["coffee"]},
        "starts_at": "2025-06-01T09:00:00-04:00",
        "ends_at": "2025-07-01T00:00:00Z",
        "daily_window": {"start": "22:00", "end": "24:00"},
        "cooldown_s": 3600,
        "max_sends": 1000,
        "priority": 7,
        "control_pct": 50,
        "ttl_s": 600,
        "deeplink": "shop://offers/croissant",
        "status": "paused",
    }
    fields = parse_offer_fields(body, partial=False)
    assert fields["geofence_ids"] == ("g1", "g2")
    assert fields["starts_at"] == datetime(2025, 6, 1, 13, tzinfo=UTC)
    assert fields["daily_window"] == DailyWindow(time(22), time(0))
    offer = Offer(id="o9", created_at=NOW, **fields)
    as_json = offer_to_json(offer)
    assert as_json["daily_window"] == {"start": "22:00", "end": "24:00"}
    assert as_json["starts_at"] == "2025-06-01T13:00:00Z"
    assert offer_from_json(as_json) == offer


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"control_pct": 51}, "control_pct"),
        ({"control_pct": -1}, "control_pct"),
        ({"control_pct": 12.5}, "control_pct"),
        ({"control_pct": True}, "control_pct"),
        ({"trigger": "visit"}, "trigger"),
        ({"trigger": None}, "trigger"),
        ({"daily_window": {"start": "9:00", "end": "17:00"}}, "daily_window.start"),
        ({"daily_window": {"start": "09:00", "end": "24:01"}}, "daily_window.end"),
        ({"daily_window": {"start": "24:00", "end": "02:00"}}, "daily_window.start"),
        ({"daily_window": {"start": "09:00", "end": "09:00"}}, "daily_window"),
        ({"daily_window": {"start": "09:00"}}, "daily_window.end"),
        ({"starts_at": "2025-06-02T00:00:00Z", "ends_at": "2025-06-01T00:00:00Z"}, "ends_at"),
        ({"starts_at": "2025-06-01T00:00:00Z", "ends_at": "2025-06-01T00:00:00Z"}, "ends_at"),
        ({"starts_at": "2025-06-01T00:00:00"}, "starts_at"),
        ({"starts_at": "2025-06-01"}, "starts_at"),
        ({"starts_at": "yesterday"}, "starts_at"),
        ({"store_ids": []}, "geofence_ids"),
        # Paths are dotted, as the API's 400 has always shown them (the hand-written check
        # this replaced said `store_ids[0]`, but the request model answered first).
        ({"store_ids": [""]}, "store_ids.0"),
        ({"store_ids": "s1"}, "store_ids"),
        ({"segments": ["vip"]}, "segments.0"),
        ({"audience": {"bought_any": ["a"], "not_bought": ["a"]}}, "audience"),
        ({"audience": {"bought": ["a"]}}, "audience.bought"),
        ({"cooldown_s": -1}, "cooldown_s"),
        ({"ttl_s": 0}, "ttl_s"),
        ({"max_sends": 0}, "max_sends"),
        ({"priority": "high"}, "priority"),
        ({"deeplink": "not a link"}, "deeplink"),
        ({"deeplink": "offers/1"}, "deeplink"),
        ({"status": "deleted"}, "status"),
        ({"control_percent": 10}, "control_percent"),
        ({"message": None}, "message"),
        (
            {"message": {"default_locale": "fr", "translations": MESSAGE["translations"]}},
            "message.translations",
        ),
        (
            {"message": {"default_locale": "en", "translations": {"en": {"title": "T"}}}},
            "message.translations.en.body",
        ),
    ],
)
def test_invalid_offer_fields(change: dict, path: str) -> None:
    error = parse_error({**VALID_BODY, **change})
    assert error.field == path
    assert error.message and isinstance(error, ValueError)


def test_required_fields_and_body_shape() -> None:
    assert parse_error({"store_ids": ["s1"], "message": MESSAGE}).field == "trigger"
    assert parse_error({"trigger": "enter", "store_ids": ["s1"]}).field == "message"
    not_an_object = parse_error([], partial=True)  # type: ignore[arg-type]
    assert not_an_object.message == "request body must be a JSON object"


def test_partial_bodies() -> None:
    assert parse_offer_fields({"control_pct": 10.0, "id": "ignored"}, partial=True) == {
        "control_pct": 10
    }
    assert parse_offer_fields({"ends_at": None, "audience": {}}, partial=True) == {
        "ends_at": None,
        "audience": None,
    }
    assert parse_error({"control_pct": 60}, partial=True).field == "control_pct"
    assert parse_error({"priority": None}, partial=True).field == "priority"
    body = {"starts_at": "2025-06-02T00:00:00Z", "ends_at": "2025-06-01T00:00:00Z"}
    assert parse_error(body, partial=True).field == "ends_at"
    # The cross-field rules of a merged PATCH.
    merged = replace(make_offer(), geofence_ids=(), store_ids=())
    with pytest.raises(OfferError) as caught:
        validate_offer(merged)
    assert caught.value.field == "geofence_ids"
    with pytest.raises(OfferError):
        validate_offer(replace(make_offer(), ends_at=make_offer().starts_at))
    validate_offer(make_offer())


@pytest.mark.parametrize(
    ("hours", "path"),
    [
        ([], "opening_hours"),
        ({}, "opening_hours"),
        ({"monday": [["08:00", "21:00"]]}, "opening_hours.monday"),
        ({"mon": ["08:00", "21:00"]}, "opening_hours.mon.0"),
        ({"mon": [["08:00"]]}, "opening_hours.mon.0"),
        ({"mon": [["8:00", "21:00"]]}, "opening_hours.mon.0.0"),
        ({"mon": [["24:00", "02:00"]]}, "opening_hours.mon.0.0"),
        ({"mon": [["08:00", "25:00"]]}, "opening_hours.mon.0.1"),
        ({"mon": [["08:00", "21:60"]]}, "opening_hours.mon.0.1"),
        ({"mon": "08:00-21:00"}, "opening_hours.mon"),
    ],
)
def test_invalid_opening_hours(hours: object, path: str) -> None:
    with pytest.raises(OfferError) as caught:
        parse_opening_hours(hours)
    assert caught.value.field == path


def test_opening_hours_are_normalized() -> None:
    assert parse_opening_hours(None) is None
    hours = {"sun": [], "mon": [("22:00", "02:00")], "tue": [["00:00", "24:00"]]}
    assert parse_opening_hours(hours) == {
        "mon": [["22:00", "02:00"]],
        "tue": [["00:00", "24:00"]],
        "sun": [],
    }


# --- SPEC 15: the learning relationship's edges ----------------------------------------------


def test_replenishment_offer_reaches_recent_buyers() -> None:
    s = BREAKERS[R.RECENTLY_BOUGHT](baseline())
    assert replace(s, offer=replace(s.offer, allow_recent_buyers=True)).reason() is None


def test_offer_without_category_ignores_interests_recent_buys_and_fatigue() -> None:
    s = baseline()
    s = with_facts(interests=frozenset(), recent_categories=frozenset({"food"}),
                   fatigued_categories=frozenset({"food"}), consent_categories=None)(s)
    assert s.reason() == R.RECENTLY_BOUGHT
    assert replace(s, offer=replace(s.offer, category=None)).reason() is None


def test_no_interests_given_means_everything_interests() -> None:
    assert with_facts(interests=None)(baseline()).reason() is None


def test_weekly_maximum_unset_or_zero() -> None:
    assert with_facts(max_per_week=None, sent_week=100)(baseline()).reason() is None
    assert with_facts(max_per_week=0, sent_week=0)(baseline()).reason() == R.WEEKLY_PREFERENCE


def test_personal_quiet_hours_replace_the_global_ones() -> None:
    # 12:00 in Toronto: outside the global 21:00-09:00, inside a personal 11:00-13:00.
    s = with_facts(quiet_hours=(time(11, 0), time(13, 0)))(baseline())
    assert s.reason() == R.QUIET_HOURS
    # In Tokyo (00:59) the global hours would silence it; personal 11:00-13:00 do not.
    s = with_facts(timezone="Asia/Tokyo", quiet_hours=(time(11, 0), time(13, 0)))(baseline())
    assert s.reason() is None
    # Equal start and end: no quiet hours at all for this person.
    s = with_facts(timezone="Asia/Tokyo", quiet_hours=(time(0, 0), time(0, 0)))(baseline())
    assert s.reason() is None
