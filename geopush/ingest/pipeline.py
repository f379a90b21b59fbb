"""One ping batch, end to end, in one transaction: filters, geofences, visits, decisions.

The device row is locked first (`FOR UPDATE`), so two batches of one device arriving at two
processes are applied one after the other and can never both fire the same enter. Every
write is one statement per batch (arrays through `unnest`), never one per ping. The answer
goes back only after COMMIT: an acknowledged ping, its events and its queued deliveries are
durable.

Round trips are what a batch of one ping costs. The common batch -- no accepted ping inside
or near a fence, which the in-memory index knows before any round trip, and no open visit --
takes one: `geopush_common_batch` locks the device, checks consent, a repeated batch_id and
the order against the last fix, and writes pings, last fix and answer, as one autocommit
statement (`common_batch`). Any other batch takes the full path (`process_batch`), four
round trips without offers to decide: BEGIN; `geopush_begin_batch` (lock the device, then
read a repeated batch's first answer and the open visits, in one call); one statement
writing pings, last fix, visits, events and the batch's answer together; COMMIT. Neither
leaves session state, so the connection goes back to the pool without asyncpg's reset.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import numpy as np

from geopush.codes import EventType
from geopush.config import Config
from geopush.errors import Forbidden, Unauthorized
from geopush.geo.filters import (
    FilterResult,
    LastFix,
    Ping,
    PingRules,
    accepted_after,
    filter_pings,
)
from geopush.geo.index import SMALL_BATCH
from geopush.geo.visits import DeviceVisits, OpenVisit, Step, VisitEvent, VisitRules, advance
from geopush.ingest.decisions import DecisionSummary, decide_events, decide_offers
from geopush.loyalty.checkins import LoyaltyTally, record_checkins
from geopush.store.database import release_without_reset
from geopush.store.geofence_index import LiveGeofenceIndex
from geopush.store.offer_keys import LiveOfferKeys
from geopush.timefmt import format_ts

_BEGIN = "SELECT * FROM geopush_begin_batch($1, $2)"
# The common batch, whole, in one autocommit statement (migration 0050).
_COMMON = "SELECT * FROM geopush_common_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
# Everything a batch writes, in one statement (data-modifying CTEs all run, in one snapshot;
# the rows they touch are disjoint: the visits closed and those opened or changed differ).
_WRITE = """
WITH new_pings AS (
    INSERT INTO pings (device_id, ts, lat, lon, accuracy_m, speed_mps)
    SELECT $1, * FROM unnest($2::timestamptz[], $3::float8[], $4::float8[], $5::float8[],
                             $6::float8[])
    ON CONFLICT DO NOTHING
), last_fix AS (
    UPDATE devices SET last_ping_ts = $7, last_lat = $8, last_lon = $9,
                       recent_enters = $22
    WHERE device_id = $1 AND $7::timestamptz IS NOT NULL
), closed AS (
    DELETE FROM visits WHERE device_id = $1 AND geofence_id = ANY($10::uuid[])
), changed AS (
    INSERT INTO visits (device_id, geofence_id, entered_at, dwell_fired, last_inside)
    SELECT $1, * FROM unnest($11::uuid[], $12::timestamptz[], $13::bool[], $14::bool[])
    ON CONFLICT (device_id, geofence_id) DO UPDATE
    SET entered_at = EXCLUDED.entered_at, dwell_fired = EXCLUDED.dwell_fired,
        last_inside = EXCLUDED.last_inside
), new_events AS (
    INSERT INTO events (event_id, device_id, geofence_id, store_id, type, ts, source)
    SELECT u.event_id, $1, u.geofence_id, u.store_id, u.type, u.ts, 'ping'
    FROM unnest($15::uuid[], $16::uuid[], $17::uuid[], $18::text[], $19::timestamptz[])
         AS u(event_id, geofence_id, store_id, type, ts)
), answer AS (
    INSERT INTO ping_batches (device_id, batch_id, response)
    SELECT $1, $20, $21 WHERE $20::text IS NOT NULL
    ON CONFLICT DO NOTHING
)
SELECT 1
"""
_INSERT_EVENTS = """
INSERT INTO events (event_id, device_id, geofence_id, store_id, type, ts, source)
SELECT u.event_id, $1, u.geofence_id, u.store_id, u.type, u.ts, $7
FROM unnest($2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::timestamptz[])
     AS u(event_id, geofence_id, store_id, type, ts)
"""


@dataclass
class BatchResult:
    """The answer of `POST /v1/pings` and what the metrics need to know about it."""

    response: dict[str, Any]
    replayed: bool = False
    events: list[VisitEvent] = field(default_factory=list)
    decisions: DecisionSummary = field(default_factory=DecisionSummary)
    loyalty: LoyaltyTally = field(default_factory=LoyaltyTally)


def ping_rules(config: Config) -> PingRules:
    g = config.geo
    return PingRules(
        future_skew_s=g.future_skew_s, max_ping_age_s=g.max_ping_age_s,
        max_accuracy_m=g.max_accuracy_m, max_speed_mps=g.max_speed_mps,
        min_ping_interval_s=g.min_ping_interval_s,
    )


def visit_rules(config: Config) -> VisitRules:
    return VisitRules(visit_timeout_s=config.geo.visit_timeout_s,
                      exit_buffer_m=config.geo.exit_buffer_m,
                      max_enters_per_hour=config.geo.max_enters_per_hour)


def event_json(event: VisitEvent) -> dict[str, Any]:
    return {"type": str(event.type), "geofence_id": event.geofence_id,
            "ts": format_ts(event.ts)}


async def ingest_batch(
    pool: asyncpg.Pool,
    fences: LiveGeofenceIndex,
    config: Config,
    device_id: UUID,
    raw_pings: list[Any],
    batch_id: str | None,
    now: datetime,
    offer_keys: LiveOfferKeys | None = None,
    common: bool = True,
) -> BatchResult:
    """Apply one batch for one device and return its answer once it is committed.

    The common batch (no fence near any ping, no open visit) is one autocommit statement;
    anything else, or a common batch the database turns back, takes the full path in a
    transaction. Either way nothing session-scoped is left on the connection, so its
    release skips the pool's reset round trip.
    """
    pre = prejudge(fences, config, raw_pings, now)
    async with pool.acquire() as conn:
        result = await common_batch(conn, config, device_id, batch_id, pre) \
            if common and pre.common else None
        if result is None:
            async with conn.transaction():
                result = await process_batch(conn, fences, config, device_id, raw_pings,
                                             batch_id, now, offer_keys, pre)
        release_without_reset(conn)
    return result


@dataclass(frozen=True)
class Prejudged:
    """A batch judged before any round trip: its pings filtered as if the device had no last
    fix, and the accepted ones located in the in-memory index (of `version`)."""

    filtered: FilterResult
    inside: list[frozenset[str]]
    near: list[frozenset[str]]
    version: int

    @property
    def common(self) -> bool:
        """No accepted ping inside a geofence or within the exit buffer of one: with no open
        visit, such a batch produces no event and changes no visit."""
        return not any(self.near)


def prejudge(fences: LiveGeofenceIndex, config: Config, raw_pings: list[Any],
             now: datetime) -> Prejudged:
    """Filters (SPEC section 2, without the device's last fix) and matching, no I/O."""
    filtered = filter_pings(raw_pings, None, now, ping_rules(config))
    inside: list[frozenset[str]] = []
    near: list[frozenset[str]] = []
    if filtered.accepted:
        lons, lats = _coordinates(filtered.accepted)
        inside, near = fences.index.locate(lons, lats, config.geo.exit_buffer_m)
    return Prejudged(filtered, inside, near, fences.version)


async def common_batch(
    conn: asyncpg.Connection,
    config: Config,
    device_id: UUID,
    batch_id: str | None,
    pre: Prejudged,
) -> BatchResult | None:
    """The common batch in one round trip, or None when it must take the full path.

    `pre` holds the facts known with no round trip. One statement (`geopush_common_batch`)
    then locks the device, checks consent, a repeated batch and the order against the real
    last fix, and writes; it commits on its own, so the answer still goes back only after
    COMMIT.
    """
    accepted = pre.filtered.accepted
    response = batch_answer(pre.filtered, [])
    row = await conn.fetchrow(
        _COMMON, device_id, batch_id,
        [p.ts for p in accepted], [p.lat for p in accepted], [p.lon for p in accepted],
        [p.accuracy_m for p in accepted], [p.speed_mps for p in accepted],
        config.geo.max_speed_mps, config.geo.min_ping_interval_s, response,
    )
    status = row["status"]
    if status == "unknown_device":
        raise Unauthorized("unknown device token")
    if status == "no_location_consent":
        raise _no_consent()
    if status == "replayed":
        return BatchResult(response=row["prior"], replayed=True)
    if status == "full":
        return None
    return BatchResult(response=response)


def batch_answer(filtered: FilterResult, events: list[VisitEvent]) -> dict[str, Any]:
    """The JSON answer of SPEC section 1 for a filtered batch and its events."""
    return {
        "accepted": len(filtered.accepted),
        "rejected": [{"index": i, "reason": str(r)} for i, r in filtered.rejected],
        "events": [event_json(e) for e in events],
    }


def _no_consent() -> Forbidden:
    return Forbidden("the device has not consented to location; pings are not stored",
                     code="no_location_consent")


@dataclass
class BatchPlan:
    """What a batch changes, decided in memory from the facts read under the device lock."""

    filtered: FilterResult
    events: list[VisitEvent]
    closed: list[str]
    changed: list[OpenVisit]
    response: dict[str, Any]
    store_of: dict[str, str | None]
    event_ids: list[UUID]
    # Device times of the enters within the last hour (the enter bound of SPEC section 10).
    recent_enters: list[datetime] = field(default_factory=list)


async def process_batch(
    conn: asyncpg.Connection,
    fences: LiveGeofenceIndex,
    config: Config,
    device_id: UUID,
    raw_pings: list[Any],
    batch_id: str | None,
    now: datetime,
    offer_keys: LiveOfferKeys | None = None,
    pre: Prejudged | None = None,
) -> BatchResult:
    """The full path of one batch; the caller holds the transaction.

    Gather (one round trip: lock, device, first answer, open visits), plan (pure), write
    (one statement), then the events' check-ins and decisions.
    """
    begun = await conn.fetchrow(_BEGIN, device_id, batch_id)
    if begun is None:
        raise Unauthorized("unknown device token")
    device = begun["device"]
    if not device["consent_location"]:
        raise _no_consent()
    if batch_id is not None and begun["prior"] is not None:
        return BatchResult(response=begun["prior"], replayed=True)

    plan = plan_batch(fences, config, device, begun, raw_pings, now, pre)
    if not plan.filtered.accepted:
        # Nothing changed, so there is nothing to keep: the same batch sent again gets the
        # same answer by being judged again, and a stream of invalid batches with fresh
        # batch_ids cannot grow `ping_batches`.
        return BatchResult(response=plan.response)
    await _write_batch(conn, device_id, batch_id, plan)
    summary = DecisionSummary()
    loyalty = LoyaltyTally()
    if plan.events:
        loyalty = await record_checkins(conn, config, device, plan.events, plan.event_ids,
                                        plan.store_of, now, decide_offers)
        summary = await decide_events(conn, config, plan.store_of, device, plan.events,
                                      plan.event_ids, now, offer_keys)
    return BatchResult(response=plan.response, events=plan.events, decisions=summary,
                       loyalty=loyalty)


def plan_batch(
    fences: LiveGeofenceIndex,
    config: Config,
    device: asyncpg.Record,
    begun: asyncpg.Record,
    raw_pings: list[Any],
    now: datetime,
    pre: Prejudged | None = None,
) -> BatchPlan:
    """SPEC sections 2 and 3 over the batch, with no I/O: filters, then visits.

    The prejudged filtering is the answer whenever the device's last fix does not change
    it (its earliest accepted ping is accepted after that fix too): then neither the
    filters nor the matching run twice."""
    last = None
    if device["last_ping_ts"] is not None:
        last = LastFix(device["last_ping_ts"], device["last_lat"], device["last_lon"])
    rules = ping_rules(config)
    located: tuple[list[frozenset[str]], list[frozenset[str]]] | None = None
    if pre is not None and (not pre.filtered.accepted
                            or accepted_after(pre.filtered.accepted[0], last, rules)):
        filtered = FilterResult(pre.filtered.accepted, pre.filtered.rejected,
                                pre.filtered.last or last)
        if pre.version == fences.version:
            located = pre.inside, pre.near
    else:
        filtered = filter_pings(raw_pings, last, now, rules)
    events: list[VisitEvent] = []
    closed: list[str] = []
    changed: list[OpenVisit] = []
    recent_enters: list[datetime] = list(device["recent_enters"])
    if filtered.accepted:
        events, closed, changed, recent_enters = _advance_visits(
            fences, config, device, begun, filtered.accepted, located)
    store_of = {
        e.geofence_id: info.store_id for e in events if (info := fences.info.get(e.geofence_id))
    }
    return BatchPlan(filtered=filtered, events=events, closed=closed, changed=changed,
                     response=batch_answer(filtered, events), store_of=store_of,
                     event_ids=[uuid.uuid4() for _ in events], recent_enters=recent_enters)


async def _write_batch(conn: asyncpg.Connection, device_id: UUID, batch_id: str | None,
                       plan: BatchPlan) -> None:
    """Pings, last fix, visits, events and the answer: one statement."""
    accepted, events, changed, final = (plan.filtered.accepted, plan.events, plan.changed,
                                        plan.filtered.last)
    await conn.execute(
        _WRITE, device_id,
        [p.ts for p in accepted], [p.lat for p in accepted], [p.lon for p in accepted],
        [p.accuracy_m for p in accepted], [p.speed_mps for p in accepted],
        final.ts if final else None, final.lat if final else None,
        final.lon if final else None,
        plan.closed,
        [v.geofence_id for v in changed], [v.entered_at for v in changed],
        [v.dwell_fired for v in changed], [v.last_inside for v in changed],
        plan.event_ids, [e.geofence_id for e in events],
        [plan.store_of.get(e.geofence_id) for e in events],
        [str(e.type) for e in events], [e.ts for e in events],
        batch_id, plan.response, plan.recent_enters,
    )


def _coordinates(accepted: list[Ping]) -> tuple[Any, Any]:
    """Longitudes and latitudes as the index takes them: lists for its plain-Python path,
    arrays above it."""
    if len(accepted) <= SMALL_BATCH:
        return [p.lon for p in accepted], [p.lat for p in accepted]
    n = len(accepted)
    return (np.fromiter((p.lon for p in accepted), dtype=np.float64, count=n),
            np.fromiter((p.lat for p in accepted), dtype=np.float64, count=n))


def _advance_visits(
    fences: LiveGeofenceIndex,
    config: Config,
    device: asyncpg.Record,
    begun: asyncpg.Record,
    accepted: list[Ping],
    located: tuple[list[frozenset[str]], list[frozenset[str]]] | None = None,
) -> tuple[list[VisitEvent], list[str], list[OpenVisit], list[datetime]]:
    """SPEC section 3 over the accepted pings: (events, visits closed, visits opened or
    changed, the device times of the enters of the last hour). `located`: the pings'
    (inside, near) sets if already matched."""
    rules = visit_rules(config)
    if located is None:
        lons, lats = _coordinates(accepted)
        located = fences.index.locate(lons, lats, rules.exit_buffer_m)
    inside, near = located
    steps = [Step(p.ts, inside[i], near[i]) for i, p in enumerate(accepted)]
    before: dict[str, OpenVisit] = {}
    if begun["visit_geofence"] is not None:
        for gid, entered, dwell, last_inside in zip(
            begun["visit_geofence"], begun["visit_entered"], begun["visit_dwell"],
            begun["visit_inside"], strict=True,
        ):
            before[str(gid)] = OpenVisit(str(gid), entered, dwell, last_inside)
    state = DeviceVisits(last_ts=device["last_ping_ts"], open=dict(before),
                         recent_enters=tuple(device["recent_enters"]))
    after, events = advance(state, steps, fences.dwell_s, rules)
    closed = [gid for gid in before if gid not in after.open]
    changed = [v for gid, v in after.open.items() if before.get(gid) != v]
    return events, closed, changed, list(after.recent_enters)


async def insert_events(
    conn: asyncpg.Connection,
    store_of: dict[str, str | None],
    device_id: UUID,
    events: list[VisitEvent],
    source: str,
) -> list[UUID]:
    """Store events (one statement) and return their new ids, in order."""
    ids = [uuid.uuid4() for _ in events]
    await conn.execute(
        _INSERT_EVENTS, device_id, ids, [e.geofence_id for e in events],
        [store_of.get(e.geofence_id) for e in events],
        [str(e.type) for e in events], [e.ts for e in events], source,
    )
    return ids


__all__ = ["BatchResult", "EventType", "ingest_batch", "insert_events", "process_batch"]
