"""What a low score sets off at once: a case, an alert to the store, the recovery offer.

All in the answer's transaction, so none happens without the others. The store's staff get
the scores, the comment and the customer's language and first name (never a surname); the
customer gets the store's active `recovery` offer through the ordinary decision of SPEC
section 4 (consent, quiet hours and caps apply), rendered in their language.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from geopush.alerts.outbox import enqueue_alert
from geopush.codes import Trigger
from geopush.config import Config
from geopush.geo.visits import VisitEvent
from geopush.ingest.decisions import DecisionSummary, decide_offers
from geopush.service.feedback import FeedbackAnswer, Recorded
from geopush.store.offers import offer_from_row
from geopush.timefmt import format_ts

ALERT_TYPE = "service_recovery"

_OPEN_CASE = """
INSERT INTO service_cases (case_id, response_id, store_id, device_id, customer_id, opened_at,
                           updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $6)
"""
_FIRST_NAME = "SELECT first_name FROM customers WHERE customer_id = $1"
_RECOVERY_OFFERS = """
SELECT * FROM offers
WHERE deleted_at IS NULL AND status = 'active' AND trigger = 'recovery'
  AND (store_ids && $1::uuid[] OR geofence_ids && $2::uuid[])
"""


@dataclass(frozen=True)
class Opened:
    case_id: UUID
    alert_id: UUID | None
    decisions: DecisionSummary


def is_low(config: Config, overall: int) -> bool:
    return overall <= config.feedback.recovery_threshold


async def open_case(conn: asyncpg.Connection, config: Config, device: asyncpg.Record,
                    answer: FeedbackAnswer, recorded: Recorded, now: datetime) -> Opened:
    """Open the case, queue the store's alert and decide the recovery offer; the device row
    is locked by the caller (the decision's caps and cooldowns are per device)."""
    case_id = uuid.uuid4()
    customer_id = device["customer_id"]
    await conn.execute(_OPEN_CASE, case_id, recorded.response_id, answer.store_id,
                       device["device_id"], customer_id, now)
    first_name = None
    if customer_id is not None:
        first_name = await conn.fetchval(_FIRST_NAME, customer_id)
    alert_id = await enqueue_alert(conn, answer.store_id, ALERT_TYPE, {
        "case_id": str(case_id),
        "response_id": str(recorded.response_id),
        "opened_at": format_ts(now),
        "overall": answer.overall,
        "dimensions": answer.dimensions,
        "expectations": answer.expectations,
        "comment": answer.comment,
        "language": device["locale"],
        "first_name": first_name,
    }, device_id=device["device_id"], customer_id=customer_id)
    geofence_id = str(recorded.geofence_id)
    store_id = str(answer.store_id)
    rows = await conn.fetch(_RECOVERY_OFFERS, [answer.store_id], [recorded.geofence_id])
    summary = DecisionSummary()
    if rows:
        event = VisitEvent(Trigger.RECOVERY, geofence_id, now)  # type: ignore[arg-type]
        summary = await decide_offers(conn, config, {geofence_id: store_id}, device, [event],
                                      [None], now, [offer_from_row(r) for r in rows],
                                      [store_id])
    return Opened(case_id, alert_id, summary)
