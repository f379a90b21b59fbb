"""The loyalty program's totals, for the dashboard and the console: points by reason,
badges, challenges and members per level, in one read-only snapshot."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from geopush.loyalty.rules import level_for
from geopush.timefmt import format_ts_or_none

_SUMMARY_POINTS = """
SELECT reason, count(*) AS entries, coalesce(sum(points), 0)::bigint AS points
FROM loyalty_ledger WHERE ts >= $1 GROUP BY reason
"""
_SUMMARY_BADGES = """
SELECT code, count(*) AS n FROM loyalty_badges WHERE earned_at >= $1 GROUP BY code
"""
_SUMMARY_CHALLENGES = """
SELECT c.challenge_id, c.name, c.kind, c.target, c.starts_at, c.ends_at,
       (SELECT count(*) FROM challenge_completions x WHERE x.challenge_id = c.challenge_id)
           AS completed
FROM challenges c WHERE c.deleted_at IS NULL ORDER BY c.ends_at DESC LIMIT 100
"""
_SUMMARY_LEVELS = """
SELECT lifetime FROM (
    SELECT coalesce(sum(points) FILTER (WHERE reason <> 'redemption'), 0) AS lifetime
    FROM loyalty_ledger WHERE subject IS NOT NULL GROUP BY subject
) s
"""


async def program_summary(pool: asyncpg.Pool, levels: dict[str, int], since: datetime
                          ) -> dict[str, Any]:
    """Totals since `since`; members per level over every account."""
    iso = format_ts_or_none
    async with pool.acquire() as conn, conn.transaction(readonly=True,
                                                        isolation="repeatable_read"):
        await conn.execute("SET LOCAL statement_timeout = '10s'")
        points = {r["reason"]: {"entries": r["entries"], "points": r["points"]}
                  for r in await conn.fetch(_SUMMARY_POINTS, since)}
        badges = {r["code"]: r["n"] for r in await conn.fetch(_SUMMARY_BADGES, since)}
        challenges = await conn.fetch(_SUMMARY_CHALLENGES)
        members = {name: 0 for name in levels}
        for r in await conn.fetch(_SUMMARY_LEVELS):
            members[level_for(int(r["lifetime"]), levels)] += 1
    return {
        "since": iso(since),
        "points": points,
        "earned": sum(v["points"] for k, v in points.items()
                      if k in ("checkin", "purchase", "challenge", "badge")),
        "redeemed": -sum(v["points"] for k, v in points.items() if k == "redemption"),
        "checkins": points.get("checkin", {}).get("entries", 0),
        "badges": badges,
        "members_by_level": members,
        "challenges": [
            {"id": str(r["challenge_id"]), "name": r["name"], "kind": r["kind"],
             "target": r["target"], "starts_at": iso(r["starts_at"]),
             "ends_at": iso(r["ends_at"]), "completed": r["completed"]}
            for r in challenges
        ],
    }
