"""The field types of every request body and import row, and the one way to check one.

Models are strict (a string is never read as a number, a number never as a boolean) and
refuse unknown fields, so a typo in a field name is an error rather than a silently ignored
setting. Every limit a value must respect to be stored (PostgreSQL integer ranges, finite
floats, years 1 to 9998, no NUL in text) is part of its type, so a bad value is a 400 that
names the field, not a database error; and the same types give the OpenAPI schema.

They sit below the API so a domain module can hold the model of what it takes (a store from
`POST /v1/stores` and from a CSV row alike) and check it with `check_body`, whose `Invalid`
lists every problem by its dotted field path, as the API's 400 does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar

from annotated_types import GroupedMetadata
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from geopush.config import is_timezone
from geopush.errors import DomainError, Invalid

# The one RFC 3339 reader and writer; pings use them too.
from geopush.timefmt import format_ts, parse_rfc3339

INT4_MAX = 2**31 - 1
INT8_MAX = 2**63 - 1


class RequestBody(BaseModel):
    """Base of every JSON request body."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def given(self) -> dict[str, Any]:
        """The fields the client sent (for PATCH: absent means unchanged, null means clear)."""
        return {name: getattr(self, name) for name in self.model_fields_set}


M = TypeVar("M", bound=BaseModel)

# The default of a PATCH field: absent. It is never read unless the client sent the field
# (`RequestBody.given()`), and a null sent is refused by the field's own type, so the field
# keeps its real type (an `| None` would let null through) and needs no type: ignore.
ABSENT: Any = None

_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "model_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "int_type": "must be a whole number",
    "float_type": "must be a number",
}


def field_path(loc: tuple[int | str, ...]) -> str:
    """`a.b.0`; a mapping's key that is refused is named by its own path (pydantic adds a
    `[key]` part to tell it from the key's value)."""
    return ".".join(str(part) for part in loc if part != "[key]")


def problems(exc: ValidationError) -> tuple[str, list[dict[str, Any]]]:
    """The headline and `{"field": "a.b.0", "message"}` details of a failed validation."""
    details = []
    for item in exc.errors(include_url=False, include_input=False):
        message = _MESSAGES.get(item["type"]) or item["msg"].removeprefix("Value error, ")
        details.append({"field": field_path(item["loc"]), "message": message})
    first = details[0]
    headline = (f"{first['field']}: {first['message']}" if first["field"]
                else f"request body {first['message']}")
    return headline, details


class InvalidBody(Invalid):
    """A body (or row) that its model refuses: every problem in `details` (400)."""

    def __init__(self, headline: str, details: list[dict[str, Any]]) -> None:
        DomainError.__init__(self, headline, details=details)
        self.field = details[0]["field"] if details else None


def check_body(model: type[M], value: Any) -> M:
    """`value` (decoded JSON, or a row made into one) as `model`, or `InvalidBody`."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise InvalidBody(*problems(exc)) from None


# --- text -----------------------------------------------------------------------------------

def _storable(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("nul", "must not contain a NUL character")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "must not be empty")
    return value


# The field rules are Annotated metadata, so a type checker sees the field's real type:
#     title: Annotated[str, NonBlank(200)]

@dataclass(frozen=True)
class Chars(GroupedMetadata):
    """A string of at most `max_length` characters that PostgreSQL text can hold."""

    max_length: int = 1000
    min_length: int = 0

    def __iter__(self) -> Iterator[object]:
        yield from Field(min_length=self.min_length, max_length=self.max_length).metadata
        yield AfterValidator(_storable)


@dataclass(frozen=True)
class NonBlank(GroupedMetadata):
    """A required, non-blank string of at most `max_length` characters."""

    max_length: int = 200

    def __iter__(self) -> Iterator[object]:
        yield from Field(min_length=1, max_length=self.max_length).metadata
        yield AfterValidator(_storable)
        yield AfterValidator(_not_blank)


# --- numbers --------------------------------------------------------------------------------

def _whole(value: Any) -> Any:
    # 10.0 is read as 10: some JSON encoders write every number with a fraction.
    if isinstance(value, float) and value.is_integer() and abs(value) <= INT8_MAX:
        return int(value)
    return value


@dataclass(frozen=True)
class WholeIn(GroupedMetadata):
    """An integer in [ge, le] (by default what a PostgreSQL `integer` holds)."""

    ge: int = -INT4_MAX - 1
    le: int = INT4_MAX

    def __iter__(self) -> Iterator[object]:
        yield BeforeValidator(_whole)
        yield from Field(ge=self.ge, le=self.le).metadata


@dataclass(frozen=True)
class Finite(GroupedMetadata):
    """A finite number (a JSON integer too large for a float is refused, not rounded)."""

    ge: float | None = None
    le: float | None = None

    def __iter__(self) -> Iterator[object]:
        yield from Field(ge=self.ge, le=self.le, allow_inf_nan=False).metadata


# --- times ----------------------------------------------------------------------------------

def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise PydanticCustomError("time_type", "must be an RFC 3339 time string")
    parsed = parse_rfc3339(value)
    if parsed is None:
        raise PydanticCustomError(
            "time", "must be an RFC 3339 time with an offset (e.g. 2025-05-01T09:00:00Z),"
            " in the years 1 to 9998")
    return parsed


def _time_text(value: datetime) -> str:
    return format_ts(value)


Time = Annotated[datetime, PlainValidator(_time),
                 PlainSerializer(_time_text, when_used="json"),
                 WithJsonSchema({"type": "string", "format": "date-time"})]


def _zone(value: str) -> str:
    if not is_timezone(value):
        raise PydanticCustomError("timezone", "unknown IANA time zone {zone}", {"zone": value})
    return value


TimeZone = Annotated[str, Field(min_length=1, max_length=64,
                                json_schema_extra={"examples": ["Europe/Paris"]}),
                     AfterValidator(_zone)]
