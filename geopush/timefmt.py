"""Time in one place: the RFC 3339 parser every input goes through, and the formatter every
timestamp in an answer goes through (UTC, always ending in `Z`).

One parser means one rule for what a time is (an offset is required, years 1 to 9998); one
formatter means a client never sees `+00:00` in one field and `Z` in the next.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


MIN_YEAR, MAX_YEAR = 1, 9998


def parse_rfc3339(text: str) -> datetime | None:
    """An RFC 3339 date-time as an aware UTC datetime, or None.

    Stricter than `datetime.fromisoformat`, which takes ISO 8601 forms RFC 3339 does not
    (dates alone, basic format, no offset): a time without an offset is ambiguous, so it is
    refused. Fractions beyond microseconds are truncated; a leap second (:60) is read as the
    next second, as POSIX clocks do; `-00:00` ("offset unknown") is read as UTC.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = map(int, match.group(1, 2, 3, 4, 5, 6))
    micro = int((match[7] or "0")[:6].ljust(6, "0"))
    if match[9] is None and second != 60:
        # `Z`, as phones send it: already UTC, no conversion (the most common case, once
        # per ping of every batch).
        try:
            ts = datetime(year, month, day, hour, minute, second, micro, UTC)
        except ValueError:
            return None
        return ts if MIN_YEAR <= ts.year <= MAX_YEAR else None
    offset = timedelta(0)
    if match[9] is not None:
        off_h, off_m = int(match[10]), int(match[11])
        if off_h > 23 or off_m > 59:
            return None
        offset = timedelta(hours=off_h, minutes=off_m) * (-1 if match[9] == "-" else 1)
    leap = second == 60
    try:
        ts = datetime(
            year, month, day, hour, minute, 59 if leap else second, micro, timezone(offset)
        )
        ts = ts.astimezone(UTC) + timedelta(seconds=1 if leap else 0)
    except (ValueError, OverflowError):
        return None
    # Years 1 to 9998 only (SPEC section 10): a day or a time zone added to any accepted
    # time must not overflow.
    return ts if MIN_YEAR <= ts.year <= MAX_YEAR else None


def format_ts(value: datetime) -> str:
    """An aware time as RFC 3339 in UTC with `Z` (a naive one is taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def format_ts_or_none(value: datetime | None) -> str | None:
    return None if value is None else format_ts(value)
