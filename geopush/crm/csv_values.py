"""Field types of the CRM's records (customers, transactions) and the CSV helpers the row
parsers share: lengths, times, columns.

The types carry their rules and messages (the value quoted, as an import's error list
shows it), so the model of a customer or a transaction is the one check of one, whether it
comes from a CSV row or any other form. CSV text needs no NUL check: the `csv` reader
refuses a NUL byte, and the whole file with it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from operator import itemgetter
from typing import Annotated, Any

from pydantic import AfterValidator, Field, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from geopush.timefmt import parse_rfc3339

MAX_ID_LEN = 200
MAX_TEXT_LEN = 500


def show(value: str) -> str:
    """A field as quoted in an error message (long ones cut)."""
    return repr(value if len(value) <= 40 else value[:40] + "…")


def _quoted(value: Any) -> str:
    return show(value) if isinstance(value, str) else repr(value)


def _time(value: Any) -> datetime:
    parsed = parse_rfc3339(value) if isinstance(value, str) else None
    if parsed is None:
        raise PydanticCustomError(
            "time", "not an RFC 3339 time with a time zone offset (e.g. Z or +02:00): {value}",
            {"value": _quoted(value)})
    return parsed


def _date_or_time(value: Any) -> datetime:
    if isinstance(value, str) and len(value) == 10:
        try:
            d = date.fromisoformat(value)
        except ValueError:
            pass
        else:
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
    parsed = parse_rfc3339(value) if isinstance(value, str) else None
    if parsed is None:
        raise PydanticCustomError("date_or_time", "not a date or an RFC 3339 time: {value}",
                                  {"value": _quoted(value)})
    return parsed


def _pattern(regex: str, message: str) -> AfterValidator:
    match = re.compile(regex).fullmatch

    def check(value: str) -> str:
        if not match(value):
            raise PydanticCustomError("pattern", message + ": {value}", {"value": show(value)})
        return value
    return AfterValidator(check)


#: An aware time: RFC 3339 with an offset (a CRM export without one is ambiguous).
ZonedTime = Annotated[datetime, PlainValidator(_time),
                      WithJsonSchema({"type": "string", "format": "date-time"})]
#: A date (taken as midnight UTC) or an RFC 3339 time.
DateOrTime = Annotated[datetime, PlainValidator(_date_or_time),
                       WithJsonSchema({"type": "string"})]
#: An identifier from the CRM: not empty, at most 200 characters.
CrmId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LEN)]
#: A name or category: at most 200 characters.
ShortText = Annotated[str, Field(max_length=MAX_ID_LEN)]
#: Free text: at most 500 characters.
LongText = Annotated[str, Field(max_length=MAX_TEXT_LEN)]
#: A language tag (`fr`, `fr-CA`; `_` as Android writes it).
Language = Annotated[str, _pattern(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8}){0,4}",
                                   "not a language tag such as fr or fr-CA")]
#: A decimal amount as text (PostgreSQL `numeric` reads it exactly; a float would round).
Decimal = Annotated[str, _pattern(r"[+-]?(?:\d{1,18}(?:\.\d{0,6})?|\.\d{1,6})",
                                  "not a decimal number")]


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
