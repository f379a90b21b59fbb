"""Check-ins: a dwell at a store's geofence earns points, in the transaction of the event.

One statement per batch credits every check-in of it (SPEC section 11): the CTEs below find
the dwells at stores not yet checked in that local day, keep those within the daily limit,
write them to the ledger, then award the badges and complete the challenges they unlock.
Only accepted pings make visit events, so a mocked or teleporting phone earns nothing; and
only a dwell from pings received within `[loyalty] checkin_max_delay_s` of when they were
taken earns points, so backdating pings (accepted up to 24 hours old, for the visit and its
offers) cannot replay a week of visits in two requests. A phone that was genuinely offline
still gets its visits, events and offers; only the points wait for a fresh visit (phones
deliver batched locations within minutes, so the default, 15 minutes, does not cost a
genuine visit its check-in).

Exactness across a customer's phones: the device row lock serializes one device's batches;
for a customer, an advisory lock (the one decisions take, so the order is always device
then customer) is taken first, so the statement's snapshot already holds every earlier
check-in of the customer and the daily limit, badges and challenges count them all. The
unique indexes (once per store per day, a badge once, a challenge once) hold regardless.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from geopush import metrics
from geopush.codes import EventType
from geopush.config import BADGE_CODES, Config
from geopush.geo.visits import VisitEvent
from geopush.loyalty.rewards import Completion, decide_rewards
from geopush.loyalty.rules import subject_of
from geopush.outcomes import DecideOffers, DecisionSummary, lock_customer

# $1 subject, $2 customer_id, $3 device_id, $4..$7 the dwells (event id, store, ts,
# geofence), $8 points per check-in, $9 limit in any 24 hours, $10/$11 badge bonus points,
# $12 the oldest dwell time that still earns (fresh pings only).
#
# The day is the store's (its time zone, from `stores`): a phone that changes its own zone
# cannot make a second day, and two phones of one customer in different zones make one. The
# limit counts the subject's check-ins in the 24 hours before each new one; the new ones of a
# batch are minutes apart (they come from fresh pings), so they all count against it too.
_CREDIT = """
WITH ev AS (
    SELECT e.event_id, e.store_id, e.ts,
           (e.ts AT TIME ZONE coalesce(s.timezone, 'UTC'))::date AS day, e.geofence_id, e.n
    FROM unnest($4::uuid[], $5::uuid[], $6::timestamptz[], $7::uuid[])
         WITH ORDINALITY AS e(event_id, store_id, ts, geofence_id, n)
    LEFT JOIN stores s ON s.store_id = e.store_id
    WHERE e.ts >= $12
), prior AS (
    SELECT local_day AS day, store_id, ts FROM loyalty_ledger
    WHERE subject = $1 AND reason = 'checkin'
), fresh AS (
    SELECT DISTINCT ON (e.day, e.store_id) e.* FROM ev e
    WHERE NOT EXISTS (SELECT 1 FROM prior p WHERE p.day = e.day AND p.store_id = e.store_id)
    ORDER BY e.day, e.store_id, e.ts, e.n
), allowed AS (
    SELECT f.* FROM (
        SELECT f.*, row_number() OVER (ORDER BY f.ts, f.n) AS k FROM fresh f
    ) f
    WHERE f.k + (SELECT count(*) FROM prior p
                 WHERE p.ts > f.ts - interval '24 hours' AND p.ts < f.ts + interval '24 hours'
                ) <= $9
), checkins AS (
    INSERT INTO loyalty_ledger (ts, points, reason, ref, subject, customer_id, device_id,
                                store_id, local_day)
    SELECT ts, $8, 'checkin', event_id::text, $1, $2, $3, store_id, day FROM allowed
    ON CONFLICT DO NOTHING
    RETURNING points
), visits AS (
    SELECT day, store_id, ts FROM prior UNION ALL SELECT day, store_id, ts FROM allowed
), runs AS (
    SELECT count(*) AS length FROM (
        SELECT day - (row_number() OVER (ORDER BY day))::int AS island
        FROM (SELECT DISTINCT day FROM visits) d
    ) r GROUP BY island
), stats AS (
    SELECT (SELECT count(*) FROM visits) AS checkins,
           (SELECT count(DISTINCT store_id) FROM visits) AS stores,
           (SELECT coalesce(max(length), 0) FROM runs) AS best_run,
           (SELECT max(ts) FROM allowed) AS at
), earned AS (
    SELECT b.code, s.at FROM stats s, LATERAL (VALUES
        ('first_visit', s.checkins >= 1), ('explorer', s.stores >= 5),
        ('regular', s.checkins >= 10), ('streak_3', s.best_run >= 3),
        ('streak_7', s.best_run >= 7)) AS b(code, ok)
    WHERE b.ok AND s.at IS NOT NULL
), badges AS (
    INSERT INTO loyalty_badges (subject, code, earned_at, customer_id, device_id)
    SELECT $1, code, at, $2, $3 FROM earned
    ON CONFLICT (subject, code) DO NOTHING
    RETURNING code, earned_at
), badge_points AS (
    INSERT INTO loyalty_ledger (ts, points, reason, ref, subject, customer_id, device_id)
    SELECT b.earned_at, p.points, 'badge', b.code, $1, $2, $3
    FROM badges b JOIN unnest($10::text[], $11::int[]) AS p(code, points) USING (code)
    WHERE p.points > 0
    ON CONFLICT DO NOTHING
    RETURNING points
), open_challenges AS (
    SELECT c.* FROM challenges c
    WHERE c.deleted_at IS NULL AND c.kind IN ('checkins', 'distinct_stores')
      AND EXISTS (SELECT 1 FROM allowed a WHERE a.ts >= c.starts_at AND a.ts < c.ends_at
                  AND (c.store_ids = '{}' OR a.store_id = ANY(c.store_ids)))
      AND NOT EXISTS (SELECT 1 FROM challenge_completions x
                      WHERE x.challenge_id = c.challenge_id AND x.subject = $1)
), progress AS (
    SELECT c.challenge_id, c.target, c.reward_points, c.offer_id,
           CASE WHEN c.kind = 'checkins' THEN count(*)
                ELSE count(DISTINCT v.store_id) END AS done,
           max(a.ts) AS at,
           (array_agg(a.geofence_id ORDER BY a.ts DESC) FILTER (WHERE a.ts IS NOT NULL))[1]
               AS geofence_id,
           (array_agg(a.event_id ORDER BY a.ts DESC) FILTER (WHERE a.ts IS NOT NULL))[1]
               AS event_id
    FROM open_challenges c
    JOIN visits v ON v.ts >= c.starts_at AND v.ts < c.ends_at
                 AND (c.store_ids = '{}' OR v.store_id = ANY(c.store_ids))
    LEFT JOIN allowed a ON a.ts = v.ts AND a.store_id = v.store_id
    GROUP BY c.challenge_id, c.target, c.reward_points, c.offer_id, c.kind
), completed AS (
    INSERT INTO challenge_completions (challenge_id, subject, customer_id, device_id,
                                       completed_at)
    SELECT challenge_id, $1, $2, $3, at FROM progress WHERE done >= target
    ON CONFLICT DO NOTHING
    RETURNING challenge_id
), rewards AS (
    INSERT INTO loyalty_ledger (ts, points, reason, ref, subject, customer_id, device_id)
    SELECT p.at, p.reward_points, 'challenge', p.challenge_id::text, $1, $2, $3
    FROM completed c JOIN progress p USING (challenge_id)
    WHERE p.reward_points > 0
    ON CONFLICT DO NOTHING
    RETURNING points
)
SELECT (SELECT count(*) FROM checkins) AS checkins,
       (SELECT coalesce(sum(points), 0) FROM checkins) AS checkin_points,
       (SELECT coalesce(array_agg(code), '{}') FROM badges) AS badges,
       (SELECT coalesce(sum(points), 0) FROM badge_points) AS badge_points,
       (SELECT coalesce(sum(points), 0) FROM rewards) AS challenge_points,
       (SELECT coalesce(json_agg(json_build_object(
            'challenge_id', p.challenge_id, 'offer_id', p.offer_id, 'at', p.at,
            'geofence_id', p.geofence_id, 'event_id', p.event_id)), '[]')
        FROM completed c JOIN progress p USING (challenge_id)) AS completed
"""


@dataclass
class LoyaltyTally:
    """What a transaction credited, for the metrics once it has committed."""

    points: Counter[str] = field(default_factory=Counter)
    badges: Counter[str] = field(default_factory=Counter)
    challenges: int = 0
    decisions: DecisionSummary = field(default_factory=DecisionSummary)

    def observe(self) -> None:
        for reason, n in self.points.items():
            if n:
                metrics.LOYALTY_POINTS.labels(reason).inc(n)
        for code, n in self.badges.items():
            metrics.BADGES.labels(code).inc(n)
        if self.challenges:
            metrics.CHALLENGES_COMPLETED.inc(self.challenges)
        self.decisions.observe()


def badge_bonus(config: Config) -> tuple[list[str], list[int]]:
    bonus = config.loyalty.badge_points
    codes = [c for c in BADGE_CODES if bonus.get(c, 0) > 0]
    return codes, [bonus[c] for c in codes]


async def record_checkins(
    conn: asyncpg.Connection,
    config: Config,
    device: asyncpg.Record,
    events: list[VisitEvent],
    event_ids: list[UUID],
    store_of: dict[str, str | None],
    now: datetime,
    decide: DecideOffers,
) -> LoyaltyTally:
    """Credit the check-ins among `events` (the device row is locked by the caller) and
    decide the reward offers of the challenges they complete (with `decide`: the ingest
    path's `decide_offers`)."""
    tally = LoyaltyTally()
    if not config.loyalty.enabled:
        return tally
    dwells = [(e, i, store_of.get(e.geofence_id)) for e, i in zip(events, event_ids, strict=True)
              if e.type is EventType.DWELL and store_of.get(e.geofence_id)]
    if not dwells:
        return tally
    customer_id = device["customer_id"]
    if customer_id is not None:
        await lock_customer(conn, customer_id)
    codes, bonus = badge_bonus(config)
    row = await conn.fetchrow(
        _CREDIT, subject_of(customer_id, device["device_id"]), customer_id, device["device_id"],
        [i for _, i, _ in dwells], [UUID(s) for _, _, s in dwells], [e.ts for e, _, _ in dwells],
        [UUID(e.geofence_id) for e, _, _ in dwells],
        config.loyalty.points_per_checkin, config.loyalty.max_checkins_per_day, codes, bonus,
        now - timedelta(seconds=config.loyalty.checkin_max_delay_s),
    )
    tally.points["checkin"] += row["checkin_points"]
    tally.points["badge"] += row["badge_points"]
    tally.points["challenge"] += row["challenge_points"]
    tally.badges.update(row["badges"])
    completions = [_completion(c) for c in row["completed"]]
    tally.challenges += len(completions)
    if completions:
        tally.decisions = await decide_rewards(conn, config, device, completions, store_of,
                                               now, decide)
    return tally


def _completion(obj: dict[str, Any]) -> Completion:
    at = datetime.fromisoformat(obj["at"])
    return Completion(
        challenge_id=obj["challenge_id"], offer_id=obj["offer_id"], at=at,
        geofence_id=obj["geofence_id"],
        event_id=UUID(obj["event_id"]) if obj["event_id"] else None,
    )
