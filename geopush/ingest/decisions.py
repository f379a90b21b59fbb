"""From visit events to decisions and queued deliveries, inside the ingest transaction.

Facts are gathered with one query each for the whole batch (offers, stores, customer,
sends so far, last contacts, today's sends), `campaigns.decide` applies SPEC section 4 to each
event, and decisions and deliveries are written with one statement each. Locks match what
they protect, so ingest of unrelated devices never waits on each other:

- the device row (taken by the pipeline): the device's own cooldown and daily cap;
- an advisory lock per customer: cooldown and daily cap across the customer's devices;
- an offer's lock row only for candidates with `max_sends`, the one cap shared by every
  device (taken in id order, so never a deadlock). An offer without `max_sends` is decided
  with no lock on it, so twenty active offers do not serialize every event behind them.
  An offer given a `max_sends` by a PATCH is exact from the first decision that reads the
  new definition; decisions already running on the old one may queue on top of it.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from geopush.campaigns.decide import (
    CampaignRules,
    DecisionFacts,
    EventFacts,
    candidate_offers,
    decide,
    local_day_start,
)
from geopush.campaigns.templates import render
from geopush.codes import EventType, Outcome, Segment, Trigger
from geopush.config import Config
from geopush.delivery.outbox import OUTBOX_CHANNEL
from geopush.geo.visits import VisitEvent
from geopush.ingest.learning import LearningFacts, learning_facts
from geopush.ingest.recognition import recognize_arrivals
from geopush.loyalty.levels import subject_level
from geopush.outcomes import DecisionSummary, lock_customer
from geopush.store.offer_keys import LiveOfferKeys
from geopush.store.offers import offer_from_row, store_from_row

_OFFERS = """
SELECT * FROM offers
WHERE deleted_at IS NULL AND status = 'active' AND trigger = ANY($1::text[])
  AND (geofence_ids && $2::uuid[] OR store_ids && $3::uuid[])
"""
_STORES = """
SELECT store_id, name, timezone, opening_hours FROM stores WHERE store_id = ANY($1::uuid[])
"""
# Purchase categories for `audience`: those bought within the FRAT lookback, the same set
# as the customer's FRAT "types". Recommended categories are read as the last basket-rules
# run wrote them: a decision never mines.
_CUSTOMER = """
SELECT c.segment, c.first_name,
       ARRAY(SELECT DISTINCT t.category FROM transactions t
             WHERE t.customer_id = c.customer_id AND t.category IS NOT NULL
               AND t.ts >= $2::timestamptz - make_interval(days => $3)) AS categories,
       coalesce((SELECT r.categories FROM customer_recommendations r
                 WHERE r.customer_id = c.customer_id), '{}') AS recommended
FROM customers c WHERE c.customer_id = $1
"""
_ENSURE_OFFER_LOCKS = """
INSERT INTO offer_locks (offer_id) SELECT unnest($1::uuid[]) ON CONFLICT DO NOTHING
"""
# The lock rows: decisions on one offer are serialized so max_sends is exact.
_LOCK_OFFERS = """
SELECT offer_id FROM offer_locks WHERE offer_id = ANY($1::uuid[])
ORDER BY offer_id FOR UPDATE
"""
# max_sends counts the offer's deliveries queued or sent (not cancelled or failed ones).
_SENDS = """
SELECT offer_id, count(*) AS sends FROM deliveries
WHERE offer_id = ANY($1::uuid[]) AND status IN ('queued', 'sent')
GROUP BY offer_id
"""
# The cooldown counts a delivery queued, sent or held out (control); one cancelled, expired
# or failed does not (SPEC section 4), so a push cancelled as left_geofence leaves the offer
# free for the next visit.
_CONTACTED = """
outcome = 'control' OR (outcome = 'queued' AND NOT EXISTS (
    SELECT 1 FROM deliveries v WHERE v.device_id = decisions.device_id
    AND v.decision_id = decisions.decision_id AND v.status IN ('cancelled', 'failed')))
"""
_LAST_CONTACT_CUSTOMER = f"""
SELECT offer_id, max(decided_at) AS at FROM decisions
WHERE customer_id = $1 AND offer_id = ANY($2::uuid[]) AND ({_CONTACTED})
GROUP BY offer_id
"""
_LAST_CONTACT_DEVICE = f"""
SELECT offer_id, max(decided_at) AS at FROM decisions
WHERE device_id = $1 AND offer_id = ANY($2::uuid[]) AND ({_CONTACTED})
GROUP BY offer_id
"""
_SENT_TODAY_CUSTOMER = """
SELECT count(*) FROM deliveries
WHERE customer_id = $1 AND created_at >= $2 AND status IN ('queued', 'sent')
"""
_SENT_TODAY_DEVICE = """
SELECT count(*) FROM deliveries
WHERE device_id = $1 AND created_at >= $2 AND status IN ('queued', 'sent')
"""
# The subject's last feedback request (SPEC section 14: at most one per min_days_between).
_LAST_FEEDBACK = f"""
SELECT max(decided_at) FROM decisions
WHERE {{subject}} = $1 AND decided_at >= $2
  AND offer_id IN (SELECT offer_id FROM offers WHERE trigger = 'feedback')
  AND ({_CONTACTED})
"""
_LAST_FEEDBACK_CUSTOMER = _LAST_FEEDBACK.format(subject="customer_id")
_LAST_FEEDBACK_DEVICE = _LAST_FEEDBACK.format(subject="device_id")
# A feedback request waits `[feedback] delay_s` after its exit: its not-before time is the
# outbox's own next_attempt_at, so the sender's claim stays the one indexed query.
_DELAY_FEEDBACK = """
UPDATE deliveries d SET next_attempt_at = u.due, expires_at = u.expires_at
FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]) AS u(id, due, expires_at)
WHERE d.delivery_id = u.id
"""
_INSERT_DECISIONS = """
INSERT INTO decisions (decision_id, event_id, device_id, customer_id, offer_id, store_id,
                       outcome, reason, decided_at)
SELECT u.id, u.event_id, $1, $2, u.offer_id, u.store_id, u.outcome, u.reason, $8
FROM unnest($3::uuid[], $4::uuid[], $5::uuid[], $6::uuid[], $7::text[], $9::text[])
     AS u(id, event_id, offer_id, store_id, outcome, reason)
"""
_INSERT_DELIVERIES = """
INSERT INTO deliveries (delivery_id, decision_id, event_id, device_id, customer_id, offer_id,
                        store_id, geofence_id, trigger, event_ts, status, expires_at, title,
                        body, deeplink, created_at)
SELECT u.id, u.decision_id, u.event_id, $1, $2, u.offer_id, u.store_id, u.geofence_id,
       u.trigger, u.event_ts, 'queued', u.expires_at, u.title, u.body, u.deeplink, $3
FROM unnest($4::uuid[], $5::uuid[], $6::uuid[], $7::uuid[], $8::uuid[], $9::uuid[],
            $10::text[], $11::timestamptz[], $12::timestamptz[], $13::text[], $14::text[],
            $15::text[])
     AS u(id, decision_id, event_id, offer_id, store_id, geofence_id, trigger, event_ts,
          expires_at, title, body, deeplink)
"""
_CANCEL_LEFT = """
UPDATE deliveries d SET status = 'cancelled', reason = 'left_geofence', finished_at = now()
FROM unnest($2::uuid[], $3::timestamptz[]) AS u(geofence_id, exit_ts)
WHERE d.device_id = $1 AND d.status = 'queued' AND d.geofence_id = u.geofence_id
  AND d.trigger IN ('enter', 'dwell') AND d.event_ts <= u.exit_ts
  AND (d.lease_until IS NULL OR d.lease_until < now())
RETURNING d.delivery_id
"""


def campaign_rules(config: Config) -> CampaignRules:
    c = config.campaigns
    return CampaignRules(quiet_hours_start=c.quiet_start, quiet_hours_end=c.quiet_end,
                         daily_cap=c.daily_cap,
                         feedback_min_days_between=config.feedback.min_days_between)


async def decide_events(
    conn: asyncpg.Connection,
    config: Config,
    store_of: dict[str, str | None],
    device: asyncpg.Record,
    events: list[VisitEvent],
    event_ids: list[UUID],
    now: datetime,
    offer_keys: LiveOfferKeys | None = None,
) -> DecisionSummary:
    """Decide every event of one device's batch; the device row is already locked.

    With `offer_keys` (this process's active offers' keys), events no active offer could
    match skip the offer query and everything after it."""
    summary = DecisionSummary()
    device_id = device["device_id"]
    exits: dict[str, datetime] = {}
    for e in events:
        if e.type is EventType.EXIT:
            exits[e.geofence_id] = max(e.ts, exits.get(e.geofence_id, e.ts))

    geofence_ids = sorted({e.geofence_id for e in events})
    store_ids = sorted({s for g in geofence_ids if (s := store_of.get(g))})
    triggers = sorted({str(e.type) for e in events})
    keys = [(str(e.type), e.geofence_id, store_of.get(e.geofence_id)) for e in events]
    if any(e.type is EventType.EXIT and e.after_dwell for e in events):
        triggers.append(str(Trigger.FEEDBACK))
        keys += [(str(Trigger.FEEDBACK), e.geofence_id, store_of.get(e.geofence_id))
                 for e in events if e.type is EventType.EXIT and e.after_dwell]
    offer_rows: list[asyncpg.Record] = []
    if offer_keys is None or offer_keys.may_match(keys):
        offer_rows = await conn.fetch(_OFFERS, triggers, geofence_ids, store_ids)
    if offer_rows:
        summary = await _decide_with_offers(
            conn, config, store_of, device, events, event_ids, now,
            [offer_from_row(r) for r in offer_rows], store_ids,
        )
    if exits:
        cancelled = await conn.fetch(
            _CANCEL_LEFT, device_id, list(exits), list(exits.values())
        )
        summary.cancelled = len(cancelled)
    await recognize_arrivals(conn, config, store_of, device, events)  # SPEC 15
    return summary


@dataclass
class _Facts:
    """What the decisions of one batch read, gathered under the locks."""

    counters: dict[str, int]
    stores: dict[str, Any]
    segment: Segment
    first_name: str | None
    bought: frozenset[str]
    recommended: tuple[str, ...]
    last_contact: dict[str, datetime]
    sent_today: int
    level: Any
    timezone: str
    last_feedback: datetime | None = None
    learned: LearningFacts = field(default_factory=LearningFacts)  # SPEC 15


@dataclass
class _Plan:
    """The rows a batch's decisions write, and their counts for the metrics."""

    decisions: list[tuple[Any, ...]] = field(default_factory=list)
    deliveries: list[tuple[Any, ...]] = field(default_factory=list)
    # Feedback requests: (delivery id, not before, expires at), queued after the exit.
    delayed: list[tuple[UUID, datetime, datetime]] = field(default_factory=list)
    summary: DecisionSummary = field(default_factory=DecisionSummary)


async def _decide_with_offers(
    conn: asyncpg.Connection,
    config: Config,
    store_of: dict[str, str | None],
    device: asyncpg.Record,
    events: list[VisitEvent],
    event_ids: Sequence[UUID | None],
    now: datetime,
    offers: list[Any],
    store_ids: list[str],
) -> DecisionSummary:
    """Gather the facts (locks first), decide in memory, write the rows."""
    facts = await _gather_facts(conn, config, device, now, offers, store_ids)
    plan = _plan_decisions(config, store_of, device, events, event_ids, now, offers, facts)
    await _write_decisions(conn, device, now, plan)
    return plan.summary


async def _gather_facts(
    conn: asyncpg.Connection,
    config: Config,
    device: asyncpg.Record,
    now: datetime,
    offers: list[Any],
    store_ids: list[str],
) -> _Facts:
    device_id = device["device_id"]
    customer_id = device["customer_id"]
    offer_ids = sorted(o.id for o in offers)
    if customer_id is not None:
        # Serialize decisions per customer across their devices and across processes.
        await lock_customer(conn, customer_id)
    # Only a budget (max_sends) is shared across devices: only those offers are locked,
    # and only their deliveries counted.
    capped = sorted(o.id for o in offers if o.max_sends is not None)
    counters = {str(o): 0 for o in capped}
    if capped:
        await conn.execute(_ENSURE_OFFER_LOCKS, capped)
        await conn.execute(_LOCK_OFFERS, capped)
        counters |= {str(r["offer_id"]): r["sends"] for r in await conn.fetch(_SENDS, capped)}
    stores = {str(r["store_id"]): store_from_row(r) for r in await conn.fetch(_STORES, store_ids)}

    segment, first_name, bought = Segment.UNKNOWN, None, frozenset[str]()
    recommended: tuple[str, ...] = ()
    if customer_id is not None:
        row = await conn.fetchrow(_CUSTOMER, customer_id, now, config.segments.lookback_days)
        if row is not None:
            segment = Segment(row["segment"])
            first_name = row["first_name"]
            bought = frozenset(row["categories"])
            recommended = tuple(row["recommended"])
        contacts = await conn.fetch(_LAST_CONTACT_CUSTOMER, customer_id, offer_ids)
    else:
        contacts = await conn.fetch(_LAST_CONTACT_DEVICE, device_id, offer_ids)
    tz = device["timezone"] or "UTC"
    day_start = local_day_start(now, tz)
    if customer_id is not None:
        sent_today = await conn.fetchval(_SENT_TODAY_CUSTOMER, customer_id, day_start)
    else:
        sent_today = await conn.fetchval(_SENT_TODAY_DEVICE, device_id, day_start)
    level = await subject_level(conn, config, customer_id, device_id, offers)
    learned = await learning_facts(conn, config, customer_id, device_id, now)
    last_feedback = None
    if any(o.trigger == Trigger.FEEDBACK for o in offers):
        since = now - timedelta(days=config.feedback.min_days_between)
        if customer_id is not None:
            last_feedback = await conn.fetchval(_LAST_FEEDBACK_CUSTOMER, customer_id, since)
        else:
            last_feedback = await conn.fetchval(_LAST_FEEDBACK_DEVICE, device_id, since)
    return _Facts(counters=counters, stores=stores, segment=segment, first_name=first_name,
                  bought=bought, recommended=recommended,
                  last_contact={str(r["offer_id"]): r["at"] for r in contacts},
                  sent_today=sent_today, level=level, timezone=tz,
                  last_feedback=last_feedback, learned=learned)


def _plan_decisions(
    config: Config,
    store_of: dict[str, str | None],
    device: asyncpg.Record,
    events: list[VisitEvent],
    event_ids: Sequence[UUID | None],
    now: datetime,
    offers: list[Any],
    facts: _Facts,
) -> _Plan:
    """SPEC section 4 for each event in turn, with no I/O: each decision sees the sends
    and contacts of those before it."""
    plan = _Plan()
    device_id = device["device_id"]
    customer_id = device["customer_id"]
    last_contact = dict(facts.last_contact)
    sent_today = facts.sent_today
    last_feedback = facts.last_feedback
    rules = campaign_rules(config)
    token_active = bool(device["fcm_token"]) and device["fcm_token_active"]
    bumps: Counter[str] = Counter()
    for event, event_id in zip(events, event_ids, strict=True):
        store_id = store_of.get(event.geofence_id)
        store = facts.stores.get(store_id) if store_id else None
        candidates = candidate_offers(offers, event.type, event.geofence_id, store_id,
                                      after_dwell=event.after_dwell)
        if not candidates:
            continue
        decision_facts = DecisionFacts(
            device_id=str(device_id), customer_id=customer_id, segment=facts.segment,
            purchase_categories=facts.bought, recommended_categories=facts.recommended,
            push_consent=device["consent_push"],
            consent_categories=(None if device["consent_categories"] is None
                                else frozenset(device["consent_categories"])),
            timezone=facts.timezone, token_active=token_active,
            offer_sends={k: v + bumps[k] for k, v in facts.counters.items()},
            last_contact=dict(last_contact), sent_today=sent_today, level=facts.level,
            last_feedback=last_feedback,
            **facts.learned.decision_fields(sent_today - facts.sent_today),
        )
        results = decide(EventFacts(event.type, event.geofence_id, store, event.ts),
                         candidates, decision_facts, now, rules)
        by_id = {o.id: o for o in candidates}
        for d in results:
            decision_id = uuid.uuid4()
            reason = None if d.reason is None else str(d.reason)
            plan.decisions.append((decision_id, event_id, d.offer_id, store_id,
                                   str(d.outcome), reason))
            plan.summary.outcomes[(str(d.outcome), reason or "")] += 1
            if d.outcome in (Outcome.QUEUED, Outcome.CONTROL):
                last_contact[d.offer_id] = now
                if by_id[d.offer_id].trigger == Trigger.FEEDBACK:
                    last_feedback = now
            if d.outcome is Outcome.QUEUED:
                offer = by_id[d.offer_id]
                title, body = render(offer.message, device["locale"], {
                    "first_name": facts.first_name,
                    "store_name": store.name if store else None,
                })
                delivery_id = uuid.uuid4()
                trigger = str(event.type)
                if offer.trigger == Trigger.FEEDBACK:
                    trigger = str(Trigger.FEEDBACK)
                    due = event.ts + timedelta(seconds=config.feedback.delay_s)
                    plan.delayed.append((delivery_id, due, due + timedelta(seconds=offer.ttl_s)))
                plan.deliveries.append((
                    delivery_id, decision_id, event_id, d.offer_id, store_id,
                    event.geofence_id, trigger, event.ts,
                    event.ts + timedelta(seconds=offer.ttl_s), title, body, offer.deeplink,
                ))
                bumps[d.offer_id] += 1
                sent_today += 1
    return plan


async def _write_decisions(conn: asyncpg.Connection, device: asyncpg.Record, now: datetime,
                           plan: _Plan) -> None:
    """Decisions, then deliveries (one statement each), and the senders woken at COMMIT."""
    device_id = device["device_id"]
    customer_id = device["customer_id"]
    if plan.decisions:
        cols = list(zip(*plan.decisions, strict=True))
        await conn.execute(_INSERT_DECISIONS, device_id, customer_id, list(cols[0]),
                           list(cols[1]), list(cols[2]), list(cols[3]), list(cols[4]), now,
                           list(cols[5]))
    if plan.deliveries:
        cols = list(zip(*plan.deliveries, strict=True))
        await conn.execute(_INSERT_DELIVERIES, device_id, customer_id, now,
                           *[list(c) for c in cols])
        if plan.delayed:
            await conn.execute(_DELAY_FEEDBACK,
                               *[list(c) for c in zip(*plan.delayed, strict=True)])
        await conn.execute("SELECT pg_notify($1, '')", OUTBOX_CHANNEL)


async def decide_offers(
    conn: asyncpg.Connection,
    config: Config,
    store_of: dict[str, str | None],
    device: asyncpg.Record,
    events: list[VisitEvent],
    event_ids: list[UUID | None],
    now: datetime,
    offers: list[Any],
    store_ids: list[str],
) -> DecisionSummary:
    """Decide these offers for these events (a challenge's reward offer, for one): the same
    facts, locks and rules as a visit's offers; the device row is already locked."""
    return await _decide_with_offers(conn, config, store_of, device, events,
                                     event_ids, now, offers, store_ids)
