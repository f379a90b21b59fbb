"""The replay of stored visit events through the real decision (SPEC sections 4 and 16).

Pure: the caller hands over the offers, the events (already narrowed to those that can
have a candidate at all) in decision order, and the facts of each device and customer; this
walks them through `campaigns.decide.decide`, the very function ingest calls, so every rule
(today's and those added later) counts the same in the preview as live. What ingest reads
from the deliveries and decisions tables (sends so far, last contacts, today's sends) is
kept here in dicts, so cooldowns, daily caps and budgets carry through the replay, starting
empty at its first event.

Simplifications, documented for the marketer: device and customer facts are today's, the
offers competing are those active today, and a queued push is taken as sent (one cancelled
because the shopper left before it went would not hold a cooldown live).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from geopush.campaigns.decide import (
    CampaignRules,
    DecisionFacts,
    EventFacts,
    candidate_offers,
    decide,
    local_day_start,
)
from geopush.campaigns.offers import Offer, StoreInfo
from geopush.codes import EventType, Outcome, Segment

_WEEK = timedelta(days=7)


@dataclass(frozen=True)
class ReplayEvent:
    """One stored event: `now` is when it was decided (its row's `created_at`)."""

    now: datetime
    ts: datetime
    type: EventType
    geofence_id: str
    store_id: str | None
    device_id: str


@dataclass(frozen=True)
class Subject:
    """Today's facts of a device and its customer, as ingest would read them."""

    device_id: str
    push_consent: bool
    token_active: bool
    customer_id: str | None = None
    segment: Segment = Segment.UNKNOWN
    purchase_categories: frozenset[str] = frozenset()
    recommended_categories: tuple[str, ...] = ()
    consent_categories: frozenset[str] | None = None
    timezone: str = "UTC"
    level: str | None = None
    # SPEC 15, as today: own preferences, categories paused by fatigue, bought lately.
    interests: frozenset[str] | None = None
    max_per_week: int | None = None
    quiet_hours: tuple[time, time] | None = None
    fatigued_categories: frozenset[str] = frozenset()
    recent_categories: frozenset[str] = frozenset()


@dataclass
class Tally:
    """Counts for one slice (all, a segment, a store, a day) of the previewed offer."""

    triggered: int = 0
    would_send: int = 0
    control: int = 0
    suppressed: Counter[str] = field(default_factory=Counter)
    customers: set[str] = field(default_factory=set)

    def add(self, outcome: Outcome, reason: str | None, subject: str) -> None:
        self.triggered += 1
        if outcome is Outcome.QUEUED:
            self.would_send += 1
            self.customers.add(subject)
        elif outcome is Outcome.CONTROL:
            self.control += 1
        else:
            self.suppressed[reason or ""] += 1

    def as_json(self) -> dict[str, Any]:
        return {"triggered": self.triggered, "would_send": self.would_send,
                "control": self.control, "suppressed": dict(sorted(self.suppressed.items())),
                "customers": len(self.customers)}


@dataclass
class Preview:
    """The answer of `POST /v1/offers/preview`; `customers` counts distinct people (or
    devices without a customer) who would have got the push."""

    events: int = 0
    total: Tally = field(default_factory=Tally)
    by_segment: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    by_store: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    by_day: dict[date, Tally] = field(default_factory=lambda: defaultdict(Tally))

    def as_json(self) -> dict[str, Any]:
        total = self.total.as_json()
        return {
            "events": self.events,
            "triggered": total["triggered"],
            "would_send": total["would_send"],
            "control": total["control"],
            "suppressed": total["suppressed"],
            "customers": total["customers"],
            "by_segment": {k: v.as_json() for k, v in sorted(self.by_segment.items())},
            "by_store": {k: v.as_json() for k, v in sorted(self.by_store.items())},
            "by_day": {k.isoformat(): v.as_json() for k, v in sorted(self.by_day.items())},
        }


def replay(
    preview_id: str,
    offers: Sequence[Offer],
    events: Iterable[ReplayEvent],
    subjects: Mapping[str, Subject],
    stores: Mapping[str, StoreInfo],
    rules: CampaignRules,
    active: Mapping[str, Sequence[tuple[datetime, datetime | None]]] | None = None,
) -> Preview:
    """Decide every event in the given (decision) order; count the fate of `preview_id`.

    `active`: per competing offer, the [from, until) periods it was active (until None:
    still is); it competes only for events decided within one, as it did live. An offer
    not named here competes throughout."""
    active = active or {}
    result = Preview()
    # candidate_offers itself, once per (trigger, geofence, store): events repeat them.
    candidates_of: dict[tuple[EventType, str, str | None], list[Offer]] = {}
    day_starts: dict[tuple[str, int], datetime] = {}
    facts_of: dict[tuple[str, int, int], DecisionFacts] = {}
    sends: Counter[str] = Counter()  # per offer: queued so far (max_sends)
    last_contact: dict[str, dict[str, datetime]] = defaultdict(dict)  # subject → offer → at
    sent_at: dict[str, list[datetime]] = defaultdict(list)  # subject → queued times, in order
    unknown = Subject(device_id="", push_consent=False, token_active=False)
    for event in events:
        result.events += 1
        key = (event.type, event.geofence_id, event.store_id)
        candidates = candidates_of.get(key)  # type: ignore[assignment]
        if candidates is None:
            candidates = candidates_of[key] = candidate_offers(
                offers, event.type, event.geofence_id, event.store_id)
        if active:
            candidates = [o for o in candidates
                          if o.id not in active or _active_at(active[o.id], event.now)]
        if not candidates:
            continue
        subject = subjects.get(event.device_id) or unknown
        who = subject.customer_id if subject.customer_id is not None else event.device_id
        times = sent_at.get(who)
        sent_today = sent_week = 0
        if times:
            sent_week = len(times) - bisect_left(times, event.now - _WEEK)
            # Day starts fall on quarter hours in every zone: one per zone and quarter.
            quarter = (subject.timezone, int(event.now.timestamp()) // 900)
            day_start = day_starts.get(quarter)
            if day_start is None:
                day_start = day_starts[quarter] = local_day_start(event.now, subject.timezone)
            sent_today = len(times) - bisect_left(times, day_start)
        contacts = last_contact[who]
        # `sends` and `contacts` are the live dicts, so one facts value per device and
        # count of today's sends serves every event until that count changes.
        facts = facts_of.get((event.device_id, sent_today, sent_week))
        if facts is None:
            facts = facts_of[(event.device_id, sent_today, sent_week)] = DecisionFacts(
                device_id=event.device_id, push_consent=subject.push_consent,
                token_active=subject.token_active, customer_id=subject.customer_id,
                segment=subject.segment, purchase_categories=subject.purchase_categories,
                recommended_categories=subject.recommended_categories,
                consent_categories=subject.consent_categories, timezone=subject.timezone,
                offer_sends=sends, last_contact=contacts, sent_today=sent_today,
                level=subject.level, interests=subject.interests,
                max_per_week=subject.max_per_week, quiet_hours=subject.quiet_hours,
                fatigued_categories=subject.fatigued_categories,
                recent_categories=subject.recent_categories, sent_week=sent_week,
            )
        store = stores.get(event.store_id) if event.store_id else None
        decisions = decide(EventFacts(event.type, event.geofence_id, store, event.ts),
                           candidates, facts, event.now, rules)
        for d in decisions:
            if d.outcome is Outcome.QUEUED or d.outcome is Outcome.CONTROL:
                contacts[d.offer_id] = event.now
            if d.outcome is Outcome.QUEUED:
                sends[d.offer_id] += 1
                sent_at[who].append(event.now)
            if d.offer_id == preview_id:
                reason = None if d.reason is None else str(d.reason)
                segment = str(subject.segment if subject.customer_id else Segment.UNKNOWN)
                for tally in (result.total, result.by_segment[segment],
                              result.by_store[event.store_id or "none"],
                              result.by_day[event.now.date()]):
                    tally.add(d.outcome, reason, who)
    return result


def _active_at(periods: Sequence[tuple[datetime, datetime | None]], at: datetime) -> bool:
    return any(start <= at and (end is None or at < end) for start, end in periods)
