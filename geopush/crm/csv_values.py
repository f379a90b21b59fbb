"""Checks of single CSV fields shared by the row parsers: times, lengths, columns."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from operator import itemgetter

from geopush.timefmt import parse_rfc3339

MAX_ID_LEN = 200
MAX_TEXT_LEN = 500

def show(value: str) -> str:
    """A field as quoted in an error message (long ones cut)."""
    return repr(value if len(value) <= 40 else value[:40] + "…")


def rfc3339(value: str, name: str) -> datetime | str:
    """An aware time, or the reason it is not one."""
    parsed = parse_rfc3339(value)
    if parsed is None:
        return (f"{name}: not an RFC 3339 time with a time zone offset"
                f" (e.g. Z or +02:00):"
                f" {show(value)}")
    return parsed


def date_or_time(value: str, name: str) -> datetime | str | None:
    """A date (taken as midnight UTC) or an RFC 3339 time; empty is unknown."""
    if not value:
        return None
    if len(value) == 10:
        try:
            d = date.fromisoformat(value)
        except ValueError:
            return f"{name}: not a date or an RFC 3339 time: {show(value)}"
        return datetime(d.year, d.month, d.day, tzinfo=UTC)
    return rfc3339(value, name)


def width_error(fields: list[str], width: int) -> str:
    return f"expected {width} fields, got {len(fields)}"


def columns_getter(positions: dict[str, int], names: tuple[str, ...]
                   ) -> Callable[[list[str]], tuple[str, ...]]:
    """A function picking the named columns of a record, stripped, in the order named."""
    idx = [positions[n] for n in names]
    getter = itemgetter(*idx)
    strip = str.strip
    if len(idx) == 1:
        return lambda fields: (strip(getter(fields)),)
    return lambda fields: tuple(map(strip, getter(fields)))
