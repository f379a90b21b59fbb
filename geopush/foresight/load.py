"""Gathering what a preview replays, in a child process: offers, events, devices, customers.

Only the events that can have a candidate at all are read: a trigger and a target (geofence
or store) of the previewed offer or of a competing offer, within the window; everything else
could not change any count. They arrive as one binary COPY parsed into integer columns
(`columns.py`), bounded by `[campaigns] preview_max_events` (one more row than the bound
tells that it is exceeded, without counting first), and are replayed by `fast_replay`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import numpy as np

from geopush.campaigns.decide import CampaignRules
from geopush.campaigns.offers import Offer
from geopush.codes import OfferStatus, Segment, Trigger
from geopush.errors import Invalid, Unprocessable
from geopush.foresight.columns import COPY_COLUMNS, EventColumns, from_copy
from geopush.foresight.fast_replay import fast_replay
from geopush.foresight.replay import Preview, Subject
from geopush.loyalty.levels import subject_totals
from geopush.loyalty.rules import level_for, subject_of
from geopush.store.offers import offer_from_row, store_from_row
from geopush.store.preferences import preferences_from_row
from geopush.store.preferences import subject_of as pref_subject

log = logging.getLogger(__name__)

VISIT_TRIGGERS = (Trigger.ENTER, Trigger.DWELL, Trigger.EXIT)

# Every offer that may have competed in the window: what it was then comes from its status
# log (SPEC 16: "with the offers that were active then competing"); offers written without
# one (before the log, or straight into the table) count as active since their creation
# while they are active now.
_COMPETITORS = """
SELECT o.*, l.statuses, l.ats FROM offers o
LEFT JOIN (SELECT offer_id, array_agg(status ORDER BY at) AS statuses,
                  array_agg(at ORDER BY at) AS ats
           FROM offer_status_log GROUP BY offer_id) l ON l.offer_id = o.offer_id
WHERE o.trigger = ANY($1::text[]) AND o.offer_id::text <> $2
  AND (o.deleted_at IS NULL OR o.deleted_at > $3)
"""
_EVENTS = f"""
SELECT {COPY_COLUMNS}
FROM events
WHERE created_at >= $1 AND created_at <= $2
  AND ((type, geofence_id) IN (SELECT * FROM unnest($3::text[], $4::uuid[]))
       OR (type, store_id) IN (SELECT * FROM unnest($5::text[], $6::uuid[])))
ORDER BY created_at, device_id, ts, event_id
LIMIT $7
"""
_DEVICES = """
SELECT device_id::text, customer_id, consent_push, consent_categories, timezone,
       (fcm_token IS NOT NULL AND fcm_token <> '' AND fcm_token_active) AS token_active
FROM devices WHERE device_id = ANY($1::uuid[])
"""
_CUSTOMERS = """
SELECT c.customer_id, c.segment,
       ARRAY(SELECT DISTINCT t.category FROM transactions t
             WHERE t.customer_id = c.customer_id AND t.category IS NOT NULL
               AND t.ts >= $2::timestamptz - make_interval(days => $3)) AS categories,
       coalesce((SELECT r.categories FROM customer_recommendations r
                 WHERE r.customer_id = c.customer_id), '{}') AS recommended
FROM customers c WHERE c.customer_id = ANY($1::text[])
"""
_STORES = "SELECT store_id, name, timezone, opening_hours FROM stores"
# SPEC 15's facts for every person at once (ingest reads them per batch: learning.py).
_PREFERENCES = """
SELECT subject, interests, max_per_week, quiet_start, quiet_end FROM preferences
WHERE subject = ANY($1::text[])
"""
_FATIGUED = """
SELECT subject, array_agg(category) AS categories FROM category_fatigue
WHERE subject = ANY($1::text[]) AND unopened >= $2 AND last_sent_at > $3 GROUP BY subject
"""
_RECENT = """
SELECT customer_id, array_agg(DISTINCT category) AS categories FROM transactions
WHERE customer_id = ANY($1::text[]) AND category IS NOT NULL AND ts >= $2
GROUP BY customer_id
"""


@dataclass(frozen=True)
class LearningRules:
    """The `[campaigns]` settings of SPEC 15 the facts are read with."""

    fatigue_after: int = 5
    fatigue_days: int = 14
    recently_bought_days: int = 7


def check_previewable(offer: Offer) -> None:
    """Only visit offers replay visits; targets must be ids (a typo matches nothing)."""
    if offer.trigger not in VISIT_TRIGGERS:
        raise Unprocessable("only enter, dwell and exit offers can be previewed: the others"
                            " answer rewards, feedback and recoveries, not visits",
                            code="not_previewable")
    for name, ids in (("geofence_ids", offer.geofence_ids), ("store_ids", offer.store_ids)):
        for i, value in enumerate(ids):
            try:
                UUID(value)
            except ValueError:
                raise Invalid(f"offer.{name}.{i}", "not an id") from None


async def preview_offer(
    conn: asyncpg.Connection,
    offer: Offer,
    days: int,
    now: datetime,
    rules: CampaignRules,
    max_events: int,
    lookback_days: int,
    levels: dict[str, int],
    learning: LearningRules | None = None,
) -> dict[str, Any]:
    """The preview of `offer` over the `days` before `now`: reads only, never writes."""
    started = time.perf_counter()
    since = now - timedelta(days=days)
    competitors, active = await competing_offers(conn, offer.id, since)
    offers = [offer, *competitors]
    by_fence = sorted({(str(o.trigger), g) for o in offers for g in o.geofence_ids})
    by_store = sorted({(str(o.trigger), s) for o in offers for s in o.store_ids})
    data = bytearray()

    async def keep(chunk: bytes) -> None:
        data.extend(chunk)

    await conn.copy_from_query(
        _EVENTS, since, now,
        [t for t, _ in by_fence], [g for _, g in by_fence],
        [t for t, _ in by_store], [s for _, s in by_store], max_events + 1, output=keep,
        format="binary")
    events = from_copy(data)
    data.clear()  # the columns are copies: free the rows now
    if len(events) > max_events:
        raise Unprocessable(
            f"more than {max_events} visit events of the last {days} days concern this offer"
            " or the offers it competes with; preview fewer days",
            code="preview_too_large", details=[{"field": "days", "max_events": max_events}])
    fetched = time.perf_counter()
    subjects = await _subjects(conn, {d for d in events.devices if d is not None}, now,
                               lookback_days, offers, levels, learning or LearningRules())
    stores = {str(r["store_id"]): store_from_row(r) for r in await conn.fetch(_STORES)}
    read = len(events)
    events = relevant_columns(offer, competitors, events, subjects)
    result: Preview = fast_replay(offer.id, offers, events, subjects, stores, rules, active)
    log.info("preview replayed %d of %d events (fetch %.2f s, replay %.2f s)", len(events),
             read, fetched - started, time.perf_counter() - fetched)
    return result.as_json()


Periods = list[tuple[datetime, datetime | None]]


async def competing_offers(conn: asyncpg.Connection, offer_id: str, since: datetime
                           ) -> tuple[list[Offer], dict[str, Periods]]:
    """The visit offers other than `offer_id` active at some time after `since`, as they
    are now defined, and the periods each was active (`active_periods`)."""
    competitors: list[Offer] = []
    active: dict[str, Periods] = {}
    for r in await conn.fetch(_COMPETITORS, [str(t) for t in VISIT_TRIGGERS], offer_id, since):
        periods = active_periods(r["statuses"], r["ats"], r["status"], r["created_at"],
                                 r["deleted_at"])
        if any(end is None or end > since for _, end in periods):
            # It competes as it is now defined, in the periods it was active.
            rival = dataclasses.replace(offer_from_row(r), status=OfferStatus.ACTIVE)
            competitors.append(rival)
            active[rival.id] = periods
    return competitors, active


def active_periods(statuses: list[str] | None, ats: list[datetime] | None, status: str,
                   created_at: datetime, deleted_at: datetime | None
                   ) -> list[tuple[datetime, datetime | None]]:
    """The [from, until) periods an offer was active, from its status log (None: still is).
    Without a log: from its creation if it is active now, until its deletion."""
    if not statuses or not ats:
        if status != "active" or deleted_at is not None:
            return []
        return [(created_at, None)]
    periods: list[tuple[datetime, datetime | None]] = []
    since: datetime | None = None
    for state, at in zip(statuses, ats, strict=True):
        if state == "active" and since is None:
            since = at
        elif state != "active" and since is not None:
            periods.append((since, at))
            since = None
    if since is not None:
        periods.append((since, None))
    return periods


def relevant_rows(offer: Offer, competitors: list[Offer], rows: list[Any],
                  subjects: dict[str, Subject]) -> list[Any]:
    """The rows that can change the previewed offer's counts.

    What one person's events decide for the offer depends on their own cooldowns and daily
    cap, and on the budgets (`max_sends`) of the other offers, which everybody's events use
    up: a rival's budget decides whether it beats this offer, and any budgeted offer's push
    counts in a person's daily cap. Without any budget among the rivals, the events of
    people the offer never reaches cannot change a count and are left out; with one, all
    are replayed.
    """
    if any(c.max_sends is not None for c in competitors):
        return rows
    fences, stores = frozenset(offer.geofence_ids), frozenset(offer.store_ids)
    trigger = str(offer.trigger)

    def who(row: Any) -> str:
        subject = subjects.get(row[5])
        return subject.customer_id if subject and subject.customer_id else row[5]

    reached = {who(r) for r in rows
               if r[2] == trigger and (r[3] in fences or r[4] in stores)}
    return [r for r in rows if who(r) in reached]


def relevant_columns(offer: Offer, competitors: list[Offer], events: EventColumns,
                     subjects: dict[str, Subject]) -> EventColumns:
    """`relevant_rows` over columns: the same events kept, for the same reason."""
    if any(c.max_sends is not None for c in competitors):
        return events
    fences, stores = frozenset(offer.geofence_ids), frozenset(offer.store_ids)
    trigger = str(offer.trigger)
    names: dict[str | None, int] = {}
    who = []
    for device in events.devices:
        subject = subjects.get(device) if device is not None else None
        name = subject.customer_id if subject and subject.customer_id else device
        who.append(names.setdefault(name, len(names)))
    who_of = np.asarray(who, np.int64)[events.device]
    hit = np.asarray([str(t) == trigger and (f in fences or s in stores)
                      for t, f, s in events.keys], np.bool_)
    reached = np.unique(who_of[hit[events.key]])
    return events.take(np.isin(who_of, reached))


async def _subjects(conn: asyncpg.Connection, device_ids: set[str], now: datetime,
                    lookback_days: int, offers: list[Offer], levels: dict[str, int],
                    learning: LearningRules) -> dict[str, Subject]:
    devices = await conn.fetch(_DEVICES, sorted(device_ids))
    customer_ids = sorted({d["customer_id"] for d in devices if d["customer_id"]})
    customers = {r["customer_id"]: r for r in await conn.fetch(
        _CUSTOMERS, customer_ids, now, lookback_days)}
    keys = sorted({pref_subject(d["customer_id"], d["device_id"]) for d in devices})
    prefs = {r["subject"]: preferences_from_row(r)
             for r in await conn.fetch(_PREFERENCES, keys)}
    fatigued = {r["subject"]: frozenset(r["categories"]) for r in await conn.fetch(
        _FATIGUED, keys, learning.fatigue_after,
        now - timedelta(days=learning.fatigue_days))}
    recent = {r["customer_id"]: frozenset(r["categories"]) for r in await conn.fetch(
        _RECENT, customer_ids, now - timedelta(days=learning.recently_bought_days))}
    with_levels = any(o.levels for o in offers)
    out: dict[str, Subject] = {}
    for d in devices:
        customer = customers.get(d["customer_id"]) if d["customer_id"] else None
        key = pref_subject(d["customer_id"], d["device_id"])
        level = None
        if with_levels:
            _, lifetime = await subject_totals(
                conn, subject_of(d["customer_id"], UUID(d["device_id"])))
            level = level_for(lifetime, levels)
        out[d["device_id"]] = Subject(
            device_id=d["device_id"], push_consent=d["consent_push"],
            token_active=d["token_active"], customer_id=d["customer_id"],
            segment=Segment(customer["segment"]) if customer else Segment.UNKNOWN,
            purchase_categories=frozenset(customer["categories"]) if customer else frozenset(),
            recommended_categories=tuple(customer["recommended"]) if customer else (),
            consent_categories=(None if d["consent_categories"] is None
                                else frozenset(d["consent_categories"])),
            timezone=d["timezone"] or "UTC", level=level,
            **_learned(prefs.get(key), fatigued.get(key, frozenset()),
                       recent.get(d["customer_id"], frozenset())),
        )
    return out


def _learned(prefs: Any, fatigued: frozenset[str], recent: frozenset[str]
             ) -> dict[str, Any]:
    out: dict[str, Any] = {"fatigued_categories": fatigued, "recent_categories": recent}
    if prefs is not None:
        out |= {"interests": None if prefs.interests is None else frozenset(prefs.interests),
                "max_per_week": prefs.max_per_week, "quiet_hours": prefs.quiet_hours}
    return out


async def preview_job(dsn: str, offer: Offer, days: int, now: datetime, rules: CampaignRules,
                      max_events: int, lookback_days: int, levels: dict[str, int],
                      learning: LearningRules | None = None) -> dict[str, Any]:
    """The child process's entry: its own connection, one read-only transaction."""
    from geopush.store.database import _init_connection

    conn = await asyncpg.connect(dsn)
    try:
        await _init_connection(conn)
        async with conn.transaction(readonly=True, isolation="repeatable_read"):
            return await preview_offer(conn, offer, days, now, rules, max_events,
                                       lookback_days, levels, learning)
    finally:
        await conn.close()
