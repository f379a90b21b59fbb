"""An answer to "how was your visit": accepted only for a verified visit, once per visit.

A verified visit is a dwell at one of the store's geofences within `[feedback]
window_days`: nobody rates a store they did not visit. The answer rates the latest such
visit; a second answer to it is a conflict, enforced by a unique index so two racing
answers cannot both count. The comment is stored for the store's staff and never logged.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from geopush.config import Config
from geopush.errors import Conflict, Forbidden, Invalid

DIMENSIONS = ("reliability", "assurance", "tangibles", "empathy", "responsiveness")
MAX_COMMENT = 1000

_LATEST_VISIT = """
SELECT e.event_id, e.geofence_id, e.ts FROM events e
WHERE e.device_id = $1 AND e.type = 'dwell' AND e.store_id = $2 AND e.ts >= $3
ORDER BY e.ts DESC LIMIT 1
"""
_OWN_DELIVERY = "SELECT true FROM deliveries WHERE delivery_id = $1 AND device_id = $2"
_INSERT = """
INSERT INTO feedback_responses (response_id, store_id, visit_event_id, device_id, customer_id,
                                delivery_id, overall, dimensions, expectations, comment,
                                created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (visit_event_id) DO NOTHING
RETURNING response_id
"""


@dataclass(frozen=True)
class FeedbackAnswer:
    """A validated `POST /v1/feedback` body."""

    store_id: UUID
    overall: int
    dimensions: dict[str, int]
    expectations: dict[str, int]
    comment: str | None
    delivery_id: UUID | None


@dataclass(frozen=True)
class Recorded:
    response_id: UUID
    visit_event_id: UUID
    geofence_id: UUID


def _uuid(value: Any, field: str) -> UUID:
    if not isinstance(value, str):
        raise Invalid(field, "must be an id")
    try:
        return UUID(value)
    except ValueError:
        raise Invalid(field, "must be an id") from None


def _score(value: Any, field: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise Invalid(field, "must be a whole score from 1 to 5")
    return value


def _scores(value: Any, field: str) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid(field, f"must be an object with any of {', '.join(DIMENSIONS)}")
    out: dict[str, int] = {}
    for key, score in value.items():
        if key not in DIMENSIONS:
            raise Invalid(f"{field}.{key}", f"unknown dimension (one of {', '.join(DIMENSIONS)})")
        out[key] = _score(score, f"{field}.{key}")
    return out


def parse_answer(body: Any) -> FeedbackAnswer:
    """The answer, or `Invalid` naming the first bad field."""
    if not isinstance(body, dict):
        raise Invalid(None, "the body must be a JSON object")
    allowed = {"store_id", "overall", "dimensions", "expectations", "comment", "delivery_id"}
    for key in body:
        if key not in allowed:
            raise Invalid(key, "unknown field")
    if "store_id" not in body:
        raise Invalid("store_id", "is required")
    if "overall" not in body:
        raise Invalid("overall", "is required")
    comment = body.get("comment")
    if comment is not None:
        if not isinstance(comment, str):
            raise Invalid("comment", "must be text")
        if len(comment) > MAX_COMMENT:
            raise Invalid("comment", f"must be at most {MAX_COMMENT} characters")
        if "\x00" in comment:
            raise Invalid("comment", "must not contain a NUL character")
    delivery = body.get("delivery_id")
    return FeedbackAnswer(
        store_id=_uuid(body["store_id"], "store_id"),
        overall=_score(body["overall"], "overall"),
        dimensions=_scores(body.get("dimensions"), "dimensions"),
        expectations=_scores(body.get("expectations"), "expectations"),
        comment=comment or None,
        delivery_id=None if delivery is None else _uuid(delivery, "delivery_id"),
    )


async def record_answer(conn: asyncpg.Connection, config: Config, device: asyncpg.Record,
                        answer: FeedbackAnswer, now: datetime) -> Recorded:
    """Store the answer to the device's latest verified visit at the store.

    `Forbidden` (`no_visit`) without such a visit; `Conflict` when it was already answered.
    """
    since = now - timedelta(days=config.feedback.window_days)
    visit = await conn.fetchrow(_LATEST_VISIT, device["device_id"], answer.store_id, since)
    if visit is None:
        raise Forbidden("no verified visit to this store within the feedback window",
                        code="no_visit")
    if answer.delivery_id is not None and not await conn.fetchval(
            _OWN_DELIVERY, answer.delivery_id, device["device_id"]):
        raise Invalid("delivery_id", "is not a delivery of this device")
    response_id = await conn.fetchval(
        _INSERT, uuid.uuid4(), answer.store_id, visit["event_id"], device["device_id"],
        device["customer_id"], answer.delivery_id, answer.overall, answer.dimensions,
        answer.expectations, answer.comment, now)
    if response_id is None:
        raise Conflict("this visit was already rated", code="already_answered")
    return Recorded(response_id, visit["event_id"], visit["geofence_id"])
