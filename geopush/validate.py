"""Checking decoded JSON values: every problem is an `Invalid` naming the field.

Shared by the API's request bodies and the importers (a store in a CSV row is checked as a
store in `POST /v1/stores` is), so these raise domain errors, not HTTP ones.
"""

from __future__ import annotations

import math
from typing import Any

from geopush.errors import Invalid

_MISSING = object()


def field_error(field: str, message: str) -> Invalid:
    return Invalid(field, message)


def get_str(
    body: dict[str, Any], key: str, *, required: bool = False, default: Any = None,
    max_len: int = 1000, nullable: bool = True,
) -> Any:
    value = body.get(key, _MISSING)
    if value is _MISSING or (value is None and nullable and not required):
        if required:
            raise field_error(key, "is required")
        return default
    if not isinstance(value, str):
        raise field_error(key, "must be a string")
    if required and not value.strip():
        raise field_error(key, "must not be empty")
    if len(value) > max_len:
        raise field_error(key, f"must be at most {max_len} characters")
    return value


def get_bool(body: dict[str, Any], key: str, *, required: bool = False, default: Any = None) -> Any:
    value = body.get(key, _MISSING)
    if value is _MISSING:
        if required:
            raise field_error(key, "is required")
        return default
    if not isinstance(value, bool):
        raise field_error(key, "must be true or false")
    return value


def get_number(
    body: dict[str, Any], key: str, *, required: bool = False, default: Any = None,
    lo: float | None = None, hi: float | None = None, integer: bool = False,
) -> Any:
    value = body.get(key, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise field_error(key, "is required")
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise field_error(key, "must be a number")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        finite = False
    if not finite:
        raise field_error(key, "must be a finite number in range")
    if integer and value != int(value):
        raise field_error(key, "must be a whole number")
    if lo is not None and value < lo:
        raise field_error(key, f"must be at least {lo:g}")
    if hi is not None and value > hi:
        raise field_error(key, f"must be at most {hi:g}")
    return int(value) if integer else float(value)


def has_unstorable_text(value: Any) -> bool:
    """Strings PostgreSQL text cannot hold (NUL) or UTF-8 cannot encode (lone surrogates)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
