"""The loyalty program's rules as pure values (SPEC section 11): who earns, days, levels.

Points belong to a *subject*: the CRM customer when the device is linked to one (so two
phones of one customer share a balance), else the device itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from uuid import UUID

from geopush.campaigns.decide import zone


def subject_of(customer_id: str | None, device_id: UUID | str) -> str:
    """The ledger key: `c:<customer_id>`, else `d:<device_id>` (the prefixes keep a CRM id
    that happens to look like a device id from ever meeting it)."""
    return f"c:{customer_id}" if customer_id is not None else f"d:{device_id}"


def customer_subject(customer_id: str) -> str:
    return f"c:{customer_id}"


def local_day(ts: datetime, timezone: str | None) -> date:
    """The calendar day of `ts` in the device's zone (UTC when unknown)."""
    return ts.astimezone(zone(timezone)).date()


def level_for(lifetime_points: int, levels: Mapping[str, int]) -> str:
    """The highest level whose threshold the lifetime points reach."""
    best, best_at = "", -1
    for name, threshold in levels.items():
        if best_at < threshold <= lifetime_points:
            best, best_at = name, threshold
    if not best:  # below every threshold: the lowest level (config guarantees one at 0)
        best = min(levels, key=lambda name: levels[name])
    return best


def current_streak(days: Iterable[date], today: date) -> int:
    """Consecutive local days with a check-in, ending today, or yesterday while today can
    still extend it (a streak is only broken once a whole day passed without a check-in)."""
    have = set(days)
    day = today if today in have else today - timedelta(days=1)
    streak = 0
    while day in have:
        streak += 1
        day -= timedelta(days=1)
    return streak


def display_name(first_name: str | None, last_initial: str | None) -> str:
    """How a leaderboard shows someone: first name and last-name initial, nothing more."""
    first = (first_name or "").strip() or "Member"
    return f"{first} {last_initial}." if last_initial else first


def initial_of(last_name: str) -> str | None:
    """The one letter of a last name that geopush keeps (for leaderboards)."""
    return next((ch.upper() for ch in last_name if ch.isalpha()), None)
