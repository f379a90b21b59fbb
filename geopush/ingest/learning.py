"""The facts SPEC section 15 adds to a decision, gathered in one query per device batch.

Preferences (the customer's when linked, else the device's), the categories paused by
fatigue, and the categories bought within `[campaigns] recently_bought_days`. Fatigue is
read from `category_fatigue`, which a trigger keeps current as deliveries are sent, opened
and redeemed (migration 0070): one primary-key range, never the subject's history. The
weekly count is read only when the subject set a weekly maximum.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

import asyncpg

from geopush.config import Config
from geopush.store.preferences import preferences_from_row, subject_of

_FACTS = """
SELECT p.interests, p.max_per_week, p.quiet_start, p.quiet_end,
       ARRAY(SELECT f.category FROM category_fatigue f
             WHERE f.subject = $1 AND f.unopened >= $2 AND f.last_sent_at > $3) AS fatigued,
       ARRAY(SELECT DISTINCT t.category FROM transactions t
             WHERE $4::text IS NOT NULL AND t.customer_id = $4 AND t.category IS NOT NULL
               AND t.ts >= $5) AS recent
FROM (SELECT 1) AS one LEFT JOIN preferences p ON p.subject = $1
"""
_SENT_WEEK_CUSTOMER = """
SELECT count(*) FROM deliveries
WHERE customer_id = $1 AND created_at >= $2 AND status IN ('queued', 'sent')
"""
_SENT_WEEK_DEVICE = """
SELECT count(*) FROM deliveries
WHERE device_id = $1 AND created_at >= $2 AND status IN ('queued', 'sent')
"""


@dataclass(frozen=True)
class LearningFacts:
    """What `DecisionFacts` takes from section 15; `sent_week` counts before this batch."""

    interests: frozenset[str] | None = None
    max_per_week: int | None = None
    quiet_hours: tuple[time, time] | None = None
    fatigued_categories: frozenset[str] = frozenset()
    recent_categories: frozenset[str] = frozenset()
    sent_week: int = 0

    def decision_fields(self, queued_since: int) -> dict[str, Any]:
        """Keyword arguments of `DecisionFacts`, counting `queued_since` deliveries this
        batch already queued against the weekly maximum."""
        return {"interests": self.interests, "max_per_week": self.max_per_week,
                "quiet_hours": self.quiet_hours,
                "fatigued_categories": self.fatigued_categories,
                "recent_categories": self.recent_categories,
                "sent_week": self.sent_week + queued_since}


async def learning_facts(conn: asyncpg.Connection, config: Config, customer_id: str | None,
                         device_id: Any, now: datetime) -> LearningFacts:
    c = config.campaigns
    subject = subject_of(customer_id, device_id)
    row = await conn.fetchrow(
        _FACTS, subject, c.fatigue_after, now - timedelta(days=c.fatigue_days), customer_id,
        now - timedelta(days=c.recently_bought_days))
    prefs = preferences_from_row(row if row["quiet_start"] is not None
                                 or row["interests"] is not None
                                 or row["max_per_week"] is not None else None)
    sent_week = 0
    if prefs.max_per_week is not None:
        since = now - timedelta(days=7)
        if customer_id is not None:
            sent_week = await conn.fetchval(_SENT_WEEK_CUSTOMER, customer_id, since)
        else:
            sent_week = await conn.fetchval(_SENT_WEEK_DEVICE, device_id, since)
    return LearningFacts(
        interests=None if prefs.interests is None else frozenset(prefs.interests),
        max_per_week=prefs.max_per_week, quiet_hours=prefs.quiet_hours,
        fatigued_categories=frozenset(row["fatigued"]),
        recent_categories=frozenset(row["recent"]), sent_week=sent_week)
