"""What is left of hand-written JSON checks: `field_error` (an `Invalid` naming the field)
and `has_unstorable_text`. Bodies and rows are checked by their pydantic models
(`geopush.fields.check_body`); the get_str/get_number helpers went with the stores'
hand-written checks."""

from __future__ import annotations

from typing import Any

from geopush.errors import Invalid

_MISSING = object()


def field_error(field: str, message: str) -> Invalid:
    return Invalid(field, message)


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
