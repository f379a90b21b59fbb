"""A store's opening hours: checking them, and whether the store is open at a local time.

`{"mon": [["08:00", "21:00"]], ...}`, in the store's own time zone; used to check a store
(API and CSV import) and by the `store_closed` rule of the decision.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, time
from typing import Annotated, Any

from pydantic import AfterValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from geopush.campaigns.errors import OfferError

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")


def parse_opening_hours(obj: object, field_name: str = "opening_hours") -> dict[str, Any] | None:
    """Validate a store's `opening_hours` and return its normalized JSON form.

    `{"mon": [["08:00", "21:00"]], ...}`: a day left out or given `[]` is closed that day; an
    interval whose end ≤ start runs past midnight into the next day (`["22:00", "02:00"]`,
    and `["00:00", "00:00"]` is 24 hours); `"24:00"` is allowed as an end. `null` means
    unknown hours (never closed); `{}` is refused, since "closed every day" is surely a mistake.
    """
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise OfferError(field_name, "must be an object with days mon..sun, or null")
    if not obj:
        raise OfferError(field_name, "has no days; use null when the hours are unknown")
    result: dict[str, Any] = {}
    for day, intervals in obj.items():
        path = f"{field_name}.{day}"
        if day not in WEEKDAYS:
            raise OfferError(path, f"unknown day; use {', '.join(WEEKDAYS)}")
        if not isinstance(intervals, list):
            raise OfferError(path, 'must be a list of ["HH:MM", "HH:MM"] intervals')
        normalized: list[list[str]] = []
        for i, interval in enumerate(intervals):
            ipath = f"{path}.{i}"
            if not (isinstance(interval, list | tuple) and len(interval) == 2):
                raise OfferError(ipath, 'must be ["HH:MM", "HH:MM"]')
            start, end = interval
            parse_hhmm(start, f"{ipath}.0", allow_24=False)
            parse_hhmm(end, f"{ipath}.1", allow_24=True)
            normalized.append([start, end])
        result[day] = normalized
    return {day: result[day] for day in WEEKDAYS if day in result}


def opening_intervals(hours: Mapping[str, Any]) -> list[list[tuple[int, int]]]:
    """Per weekday (Monday = 0), `(start_min, end_min)` with end > start; > 1440 wraps."""
    week: list[list[tuple[int, int]]] = [[] for _ in WEEKDAYS]
    for index, day in enumerate(WEEKDAYS):
        for start_s, end_s in hours.get(day) or ():
            start = _minutes(start_s)
            end = _minutes(end_s)
            if end <= start:
                end += 1440
            week[index].append((start, end))
    return week


def is_open(hours: Mapping[str, Any], local: datetime) -> bool:
    """Whether a store with these (validated) hours is open at this store-local wall time.

    Wall-clock semantics: on a DST day a store open 08:00–21:00 opens at 08:00 local time,
    whatever the UTC offset. An interval from the previous day that runs past midnight counts.
    """
    week = opening_intervals(hours)
    minute = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
    today = local.weekday()
    if any(start <= minute < end for start, end in week[today]):
        return True
    yesterday = (today - 1) % 7
    return any(minute + 1440 < end for _start, end in week[yesterday])


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def parse_hhmm(value: object, path: str, *, allow_24: bool) -> time:
    """`HH:MM` (two digits each) to a time; `24:00` becomes 00:00 where allowed as an end."""
    if allow_24 and value == "24:00":
        return time(0, 0)
    if not isinstance(value, str) or not _HHMM.fullmatch(value):
        expected = "00:00..24:00" if allow_24 else "00:00..23:59"
        raise OfferError(path, f'must be a time "HH:MM" ({expected})')
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


# The same rule as a field type, for the request models (an offer's daily window, a store's
# opening hours, a device's quiet hours): one HH:MM rule wherever a time of day is read.

def _clock(allow_24: bool) -> AfterValidator:
    def check(value: str) -> str:
        try:
            parse_hhmm(value, "", allow_24=allow_24)
        except OfferError as exc:
            raise PydanticCustomError("hhmm", exc.reason) from None
        return value
    return AfterValidator(check)


#: A time of day, `HH:MM` with two digits each, 00:00 to 23:59.
ClockTime = Annotated[str, _clock(allow_24=False), WithJsonSchema(
    {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$", "examples": ["22:00"]})]
#: The end of an interval: a `ClockTime`, or `24:00` (midnight, at the end of the day).
ClockEnd = Annotated[str, _clock(allow_24=True), WithJsonSchema(
    {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$",
     "examples": ["21:00"]})]
