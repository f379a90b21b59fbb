"""Request bodies as pydantic models: the 400 of the API edge.

The field types live in `geopush.fields` (below the API, so domain modules can hold their
models); they are re-exported here for the handlers.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from geopush.api.errors import ApiError, bad_request
from geopush.fields import (  # noqa: F401  (re-exported for the handlers)
    ABSENT,
    INT4_MAX,
    INT8_MAX,
    Chars,
    Finite,
    M,
    NonBlank,
    RequestBody,
    Time,
    TimeZone,
    WholeIn,
    field_path,
    problems,
)


def validation_error(exc: ValidationError) -> ApiError:
    """A 400 whose details list every problem as `{"field": "a.b.0", "message"}`."""
    return bad_request(*problems(exc))


def parse_model(model: type[M], value: Any) -> M:
    """`value` (decoded JSON) as `model`, or a 400 naming every bad field."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise validation_error(exc) from None
