"""The fast replay counts exactly what the replay calling `decide()` per event counts.

Random event streams, offers and people, covering every rule `decide` applies to a visit:
schedules and daily windows, opening hours, segments, levels, audiences, recent purchases,
consents, interests, stale events, budgets, cooldowns, quiet hours (global and personal,
across DST changes), daily caps, weekly maximums, fatigue, tokens, priorities and control
groups; rivals active only in some periods of the stream; devices with no row.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, time, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geopush.campaigns.decide import CampaignRules, DecisionFacts
from geopush.campaigns.offers import Audience, DailyWindow, Offer, StoreInfo
from geopush.codes import EventType, Segment, SuppressionReason, Trigger
from geopush.foresight.columns import from_events
from geopush.foresight.fast_replay import fast_replay
from geopush.foresight.replay import ReplayEvent, Subject, replay

MESSAGE = {"default_locale": "en", "translations": {"en": {"title": "Hi", "body": "x"}}}
# Europe/London and America/Santiago change their clocks in this stretch (Santiago's
# midnight falls in the gap in September); Kathmandu is 5:45 off UTC.
START = datetime(2026, 3, 27, 20, 0, tzinfo=UTC)
ZONES = ["UTC", "Europe/London", "America/Santiago", "Asia/Kathmandu", "Not/AZone"]
FENCES = ["f0", "f1", "f2", "f3"]
STORES = {
    "s0": StoreInfo("s0", "Open", "Europe/London"),
    "s1": StoreInfo("s1", "Hours", "America/Santiago",
                    {"mon": [["08:00", "21:00"]], "tue": [["22:00", "02:00"]],
                     "sat": [["00:00", "00:00"]], "sun": [["10:00", "16:00"]]}),
}
CATEGORIES = ["coffee", "tea", "cake"]
GAPS = [0, 1, 60, 1800, 3600, 14_400, 20_000, 86_400, 604_800]
TYPES = [EventType.ENTER, EventType.ENTER, EventType.ENTER, EventType.DWELL, EventType.EXIT]

categories = st.frozensets(st.sampled_from(CATEGORIES))
clock = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 59]))


def sometimes(draw: Any, strict: bool, default: Any, other: st.SearchStrategy[Any]) -> Any:
    """`default` (the permissive value) unless `strict`: most offers and people pass the
    checks on the person, so that events reach the ones that depend on earlier sends."""
    return draw(other) if strict else default


def strictness(draw: Any) -> bool:
    return bool(draw(st.integers(0, 3)) == 0)


@st.composite
def offers(draw: Any, oid: str) -> Offer:
    strict = strictness(draw)
    fences = draw(st.lists(st.sampled_from(FENCES), max_size=3, unique=True))
    stores = draw(st.lists(st.sampled_from(["s0", "s1", "s9"]), max_size=2, unique=True))
    if not fences and not stores:
        fences = ["f0"]
    category = draw(st.none() | st.sampled_from(CATEGORIES))
    audience = sometimes(draw, strict, None, st.builds(
        Audience, bought_any=st.tuples() | st.tuples(st.sampled_from(CATEGORIES)),
        not_bought=st.tuples() | st.tuples(st.sampled_from(CATEGORIES)),
        recommended=st.booleans()))
    starts = sometimes(draw, strict, None, st.integers(-2, 60).map(
        lambda h: START + timedelta(hours=h)))
    ends = sometimes(draw, strict, None, st.integers(1, 30).map(
        lambda h: (starts or START) + timedelta(hours=h)))
    window = sometimes(draw, strict, None, st.builds(DailyWindow, clock, clock).filter(
        lambda w: w.start != w.end))
    return Offer(
        id=oid, trigger=draw(st.sampled_from([Trigger.ENTER, Trigger.ENTER, Trigger.DWELL,
                                              Trigger.EXIT])),
        message=MESSAGE, created_at=START + timedelta(hours=draw(st.integers(-48, 40))),
        geofence_ids=tuple(fences), store_ids=tuple(stores),
        segments=tuple(sometimes(draw, strict, [], st.lists(
            st.sampled_from(list(Segment)), max_size=2, unique=True))),
        category=category, audience=audience, starts_at=starts, ends_at=ends,
        daily_window=window, cooldown_s=draw(st.sampled_from([0, 60, 1800, 86400])),
        max_sends=draw(st.none() | st.integers(0, 9)), priority=draw(st.integers(0, 2)),
        control_pct=draw(st.sampled_from([0, 0, 30, 100])),
        ttl_s=draw(st.sampled_from([60, 7200])),
        levels=tuple(sometimes(draw, strict, [], st.lists(
            st.sampled_from(["gold", "silver"]), max_size=1))),
        allow_recent_buyers=draw(st.booleans()))


@st.composite
def subjects(draw: Any, device: str) -> Subject:
    strict = strictness(draw)
    customer = draw(st.none() | st.sampled_from(["c0", "c1", "c2"]))
    few = st.frozensets(st.sampled_from(CATEGORIES), max_size=1)
    return Subject(
        device_id=device, push_consent=sometimes(draw, strict, True, st.booleans()),
        token_active=sometimes(draw, strict, True, st.booleans()), customer_id=customer,
        segment=draw(st.sampled_from(list(Segment))),
        purchase_categories=draw(categories),
        recommended_categories=tuple(draw(st.lists(st.sampled_from(CATEGORIES), max_size=3,
                                                   unique=True))),
        consent_categories=sometimes(draw, strict, None, categories),
        timezone=draw(st.sampled_from(ZONES)), level=draw(st.sampled_from([None, "gold"])),
        interests=sometimes(draw, strict, None, categories),
        max_per_week=draw(st.none() | st.integers(0, 4)),
        quiet_hours=sometimes(draw, strict, None, st.tuples(clock, clock)),
        fatigued_categories=sometimes(draw, strict, frozenset(), few),
        recent_categories=sometimes(draw, strict, frozenset(), few),
    )


@st.composite
def scenarios(draw: Any) -> dict[str, Any]:
    count = draw(st.integers(1, 4))
    offer_list = [draw(offers(f"o{k}")) for k in range(count)]
    devices = [f"d{i}" for i in range(draw(st.integers(1, 5)))]
    people = {d: draw(subjects(d)) for d in devices if draw(st.integers(0, 7))}
    strict = strictness(draw)
    rows = []
    at = START
    for _ in range(draw(st.integers(1, 80))):
        # Whole gaps equal to cooldowns, days and a week put sends right on the boundaries.
        at += timedelta(seconds=draw(st.sampled_from(GAPS)), microseconds=sometimes(
            draw, strict, 0, st.integers(0, 999_999)))
        fence = draw(st.sampled_from(FENCES))
        store = draw(st.sampled_from([None, "s0", "s9", "s1" if strict else "s0"]))
        lag = timedelta(seconds=sometimes(draw, strict, 2, st.integers(0, 4000)),
                        microseconds=draw(st.integers(0, 999_999)))
        device = draw(st.sampled_from([*devices, None] if strict else devices))
        rows.append((at, at - lag, draw(st.sampled_from(TYPES)), fence, store, device))
    off = (time(0), time(0))
    start, end = draw(st.sampled_from([(time(21), time(9)), off, off]) | st.tuples(clock, clock))
    rules = CampaignRules(quiet_hours_start=start, quiet_hours_end=end,
                          daily_cap=draw(st.integers(1, 6)))
    preview = draw(st.sampled_from([o.id for o in offer_list]))
    # Per rival, the periods it was active: throughout (not named), since its creation, or
    # paused and resumed, often right at an event's time (the edges are half-open).
    active: dict[str, list[tuple[datetime, datetime | None]]] = {}
    moments = sorted({START - timedelta(hours=1), *(row[0] for row in rows)})
    for o in offer_list:
        if o.id == preview or not draw(st.integers(0, 2)):
            continue
        edges = sorted(draw(st.lists(st.sampled_from(moments), min_size=1, max_size=4,
                                     unique=True)))
        ends: list[datetime | None] = [*edges[1::2]]
        active[o.id] = list(zip(edges[0::2], [*ends, None], strict=False))
    return {"offers": offer_list, "subjects": people, "rows": rows, "rules": rules,
            "preview": preview, "active": active}


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(scenarios())
def test_fast_replay_counts_what_decide_counts(case: dict[str, Any]) -> None:
    offer_list: list[Offer] = case["offers"]
    preview = case["preview"]
    created = case["active"]
    events = [ReplayEvent(*row) for row in case["rows"]]
    slow = replay(preview, offer_list, events, case["subjects"], STORES, case["rules"],
                  created)
    fast = fast_replay(preview, offer_list, from_events(case["rows"]), case["subjects"],
                       STORES, case["rules"], created)
    assert fast.as_json() == slow.as_json()


def test_fast_replay_sees_every_reason_on_a_crafted_stream() -> None:
    """The property's generator can reach the reasons; one fixed stream shows it does."""
    mine = Offer(id="mine", trigger=Trigger.ENTER, message=MESSAGE,
                 created_at=START - timedelta(days=1), geofence_ids=("f0",), cooldown_s=4 * 3600,
                 control_pct=30, max_sends=12)
    rival = Offer(id="rival", trigger=Trigger.ENTER, message=MESSAGE,
                  created_at=START - timedelta(days=1), geofence_ids=("f0",), priority=1,
                  max_sends=5)
    people = {f"d{i}": Subject(device_id=f"d{i}", push_consent=i % 5 != 0,
                               token_active=i % 7 != 0, customer_id=f"c{i % 4}",
                               timezone=ZONES[i % 4], max_per_week=2 if i % 3 == 0 else None)
              for i in range(12)}
    rows = [(START + timedelta(minutes=17 * i), START + timedelta(minutes=17 * i, seconds=-5),
             EventType.ENTER, "f0", None, f"d{i % 13}") for i in range(600)]
    created = {"rival": [(rival.created_at, START + timedelta(days=5)),
                         (START + timedelta(days=6), None)]}
    slow = replay("mine", [mine, rival], [ReplayEvent(*r) for r in rows], people, STORES,
                  CampaignRules(daily_cap=1), created)
    fast = fast_replay("mine", [mine, rival], from_events(rows), people, STORES,
                       CampaignRules(daily_cap=1), created)
    assert fast.as_json() == slow.as_json()
    seen = set(slow.as_json()["suppressed"])
    assert {"cooldown", "quiet_hours", "daily_cap", "no_push_consent", "lower_priority",
            "budget_exhausted", "no_token"} <= seen, seen


def test_a_new_reason_or_fact_of_decide_is_noticed_here() -> None:
    """`fast_replay` restates `check_offer`; a reason or fact it does not know of must be
    added there (and to the generator above) before this passes again."""
    assert [str(r) for r in SuppressionReason] == [
        "outside_schedule", "store_closed", "segment_mismatch", "level_mismatch",
        "audience_mismatch", "recently_bought", "no_push_consent", "category_opt_out",
        "not_interested", "stale_event", "budget_exhausted", "cooldown", "quiet_hours",
        "daily_cap", "weekly_preference", "fatigue", "no_token", "lower_priority",
        "control_group", "feedback_recent"]
    assert [f.name for f in fields(DecisionFacts)] == [
        "device_id", "push_consent", "token_active", "customer_id", "segment",
        "purchase_categories", "recommended_categories", "consent_categories", "timezone",
        "offer_sends", "last_contact", "sent_today", "level", "last_feedback",
        "recent_categories", "interests", "max_per_week", "sent_week", "quiet_hours",
        "fatigued_categories"]
