"""One ping batch, end to end, in one transaction: filters, geofences, visits, decisions.

The device row is locked first (`FOR UPDATE`), so two batches of one device arriving at two
processes are applied one after the other and can never both fire the same enter. Every
write is one statement per batch (arrays through `unnest`), never one per ping. The answer
goes back only after COMMIT: an acknowledged ping, its events and its queued deliveries are
durable.

Round trips are what a batch of one ping costs, so a batch without offers to decide takes
four: BEGIN; `geopush_begin_batch` (lock the device, then read a repeated batch's first
answer and the open visits, in one call); one statement writing pings, last fix, visits,
events and the batch's answer together; COMMIT.
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
from geopush.geo.filters import LastFix, PingRules, filter_pings
from geopush.geo.index import SMALL_BATCH
from geopush.geo.visits import DeviceVisits, OpenVisit, Step, VisitEvent, VisitRules, advance
from geopush.ingest.decisions import DecisionSummary, decide_events, decide_offers
from geopush.loyalty.checkins import LoyaltyTally, record_checkins
from geopush.store.geofence_index import LiveGeofenceIndex
from geopush.timefmt import format_ts

_BEGIN = "SELECT * FROM geopush_begin_batch($1, $2)"
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


async def process_batch(
    conn: asyncpg.Connection,
    fences: LiveGeofenceIndex,
    config: Config,
    device_id: UUID,
    raw_pings: list[Any],
    batch_id: str | None,
    now: datetime,
) -> BatchResult:
    """Apply one batch for one device; the caller holds the transaction."""
    begun = await conn.fetchrow(_BEGIN, device_id, batch_id)
    if begun is None:
        raise Unauthorized("unknown device token")
    device = begun["device"]
    if not device["consent_location"]:
        raise Forbidden("the device has not consented to location; pings are not stored",
                        code="no_location_consent")
    if batch_id is not None and begun["prior"] is not None:
        return BatchResult(response=begun["prior"], replayed=True)

    last = None
    if device["last_ping_ts"] is not None:
        last = LastFix(device["last_ping_ts"], device["last_lat"], device["last_lon"])
    filtered = filter_pings(raw_pings, last, now, ping_rules(config))
    accepted = filtered.accepted
    events: list[VisitEvent] = []
    closed: list[str] = []
    changed: list[OpenVisit] = []
    recent_enters: list[datetime] = list(device["recent_enters"])
    if accepted:
        events, closed, changed, recent_enters = _advance_visits(
            fences, config, device, begun, accepted)
    response = {
        "accepted": len(accepted),
        "rejected": [{"index": i, "reason": str(r)} for i, r in filtered.rejected],
        "events": [event_json(e) for e in events],
    }
    if not accepted:
        # Nothing changed, so there is nothing to keep: the same batch sent again gets the
        # same answer by being judged again, and a stream of invalid batches with fresh
        # batch_ids cannot grow `ping_batches`.
        return BatchResult(response=response)

    store_of = {
        e.geofence_id: info.store_id for e in events if (info := fences.info.get(e.geofence_id))
    }
    event_ids = [uuid.uuid4() for _ in events]
    final = filtered.last
    await conn.execute(
        _WRITE, device_id,
        [p.ts for p in accepted], [p.lat for p in accepted], [p.lon for p in accepted],
        [p.accuracy_m for p in accepted], [p.speed_mps for p in accepted],
        final.ts if accepted and final else None,
        final.lat if accepted and final else None,
        final.lon if accepted and final else None,
        closed,
        [v.geofence_id for v in changed], [v.entered_at for v in changed],
        [v.dwell_fired for v in changed], [v.last_inside for v in changed],
        event_ids, [e.geofence_id for e in events],
        [store_of.get(e.geofence_id) for e in events],
        [str(e.type) for e in events], [e.ts for e in events],
        batch_id, response, recent_enters,
    )
    summary = DecisionSummary()
    loyalty = LoyaltyTally()
    if events:
        loyalty = await record_checkins(conn, config, device, events, event_ids, store_of, now,
                                        decide_offers)
        summary = await decide_events(conn, config, store_of, device, events, event_ids, now)
    return BatchResult(response=response, events=events, decisions=summary, loyalty=loyalty)


def _advance_visits(
    fences: LiveGeofenceIndex,
    config: Config,
    device: asyncpg.Record,
    begun: asyncpg.Record,
    accepted: list[Any],
) -> tuple[list[VisitEvent], list[str], list[OpenVisit], list[datetime]]:
    """SPEC section 3 over the accepted pings: (events, visits closed, visits opened or
    changed, the device times of the enters of the last hour)."""
    rules = visit_rules(config)
    if len(accepted) <= SMALL_BATCH:  # the index's plain-Python path takes lists
        lons: Any = [p.lon for p in accepted]
        lats: Any = [p.lat for p in accepted]
    else:
        lons = np.fromiter((p.lon for p in accepted), dtype=np.float64, count=len(accepted))
        lats = np.fromiter((p.lat for p in accepted), dtype=np.float64, count=len(accepted))
    inside, near = fences.index.locate(lons, lats, rules.exit_buffer_m)
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


__all__ = ["BatchResult", "EventType", "insert_events", "process_batch"]
