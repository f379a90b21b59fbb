"""A customer's own preferences (SPEC section 15): read, changed and logged.

Preferences belong to the customer when the device is linked (every one of their devices
shares them), else to the device: the row's `subject` is `c:<customer_id>` or
`d:<device_id>`, the loyalty tables' convention. Each change is logged, as consent is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any
from uuid import UUID

import asyncpg


@dataclass(frozen=True)
class Preferences:
    """`None` everywhere is "not said": every category, no weekly maximum, global hours."""

    interests: tuple[str, ...] | None = None
    max_per_week: int | None = None
    quiet_start: str | None = None
    quiet_end: str | None = None

    @property
    def quiet_hours(self) -> tuple[time, time] | None:
        if self.quiet_start is None or self.quiet_end is None:
            return None
        return time.fromisoformat(self.quiet_start), time.fromisoformat(self.quiet_end)

    def as_json(self) -> dict[str, Any]:
        quiet = None
        if self.quiet_start is not None and self.quiet_end is not None:
            quiet = {"start": self.quiet_start, "end": self.quiet_end}
        return {"interests": None if self.interests is None else list(self.interests),
                "max_per_week": self.max_per_week, "quiet_hours": quiet}


def subject_of(customer_id: str | None, device_id: UUID | str) -> str:
    """Whose preferences these are: the customer's when linked, else the device's."""
    return f"c:{customer_id}" if customer_id is not None else f"d:{device_id}"


def preferences_from_row(row: asyncpg.Record | None) -> Preferences:
    if row is None:
        return Preferences()
    interests = row["interests"]
    return Preferences(None if interests is None else tuple(interests), row["max_per_week"],
                       row["quiet_start"], row["quiet_end"])


_GET = """
SELECT interests, max_per_week, quiet_start, quiet_end FROM preferences WHERE subject = $1
"""
_PUT = """
INSERT INTO preferences (subject, interests, max_per_week, quiet_start, quiet_end, updated_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (subject) DO UPDATE SET interests = EXCLUDED.interests,
    max_per_week = EXCLUDED.max_per_week, quiet_start = EXCLUDED.quiet_start,
    quiet_end = EXCLUDED.quiet_end, updated_at = EXCLUDED.updated_at
"""
_LOG = """
INSERT INTO preference_log (subject, device_id, interests, max_per_week, quiet_start, quiet_end)
VALUES ($1, $2, $3, $4, $5, $6)
"""


async def device_customer(conn: asyncpg.Connection, device_id: UUID,
                          lock: bool = False) -> str | None:
    """The customer the device is linked to; `lock` takes the device row as consent does."""
    sql = "SELECT customer_id FROM devices WHERE device_id = $1"
    customer: str | None = await conn.fetchval(sql + (" FOR UPDATE" if lock else ""),
                                                device_id)
    return customer


async def read_preferences(conn: asyncpg.Connection | asyncpg.Pool,
                           subject: str) -> Preferences:
    return preferences_from_row(await conn.fetchrow(_GET, subject))


async def save_preferences(conn: asyncpg.Connection, subject: str, device_id: UUID,
                           prefs: Preferences) -> bool:
    """Store and log them; an unchanged set (apps resend at start) is no change to log.
    Returns whether anything changed. The caller holds a transaction."""
    if await read_preferences(conn, subject) == prefs:
        return False
    interests = None if prefs.interests is None else list(prefs.interests)
    # The time comes as a value: Citus refuses now() in the DO UPDATE of a reference table.
    await conn.execute(_PUT, subject, interests, prefs.max_per_week, prefs.quiet_start,
                       prefs.quiet_end, datetime.now(UTC))
    await conn.execute(_LOG, subject, device_id, interests, prefs.max_per_week,
                       prefs.quiet_start, prefs.quiet_end)
    return True


# Erasure: a device's own preferences, log and fatigue go with it; a customer's with them.
# ($2 is the erasure's nil device, unused here.)
ERASE_DEVICE = (
    "DELETE FROM preferences WHERE subject = 'd:' || $1::uuid::text AND $2::uuid IS NOT NULL",
    "DELETE FROM category_fatigue WHERE subject = 'd:' || $1::uuid::text"
    " AND $2::uuid IS NOT NULL",
    "DELETE FROM preference_log WHERE (device_id = $1 OR subject = 'd:' || $1::uuid::text)"
    " AND $2::uuid IS NOT NULL",
)
ERASE_CUSTOMER = (
    "DELETE FROM preferences WHERE subject = 'c:' || $1",
    "DELETE FROM category_fatigue WHERE subject = 'c:' || $1",
    "DELETE FROM preference_log WHERE subject = 'c:' || $1",
    "DELETE FROM recognition_arrivals WHERE subject = 'c:' || $1",
)
