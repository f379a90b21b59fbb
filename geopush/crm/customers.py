"""A customer as the CRM holds them: profile, FRAT figures, devices and recommendations."""

from __future__ import annotations

from typing import Any

import asyncpg

from geopush.crm.csv_values import CrmId, DateOrTime, Language, LongText
from geopush.errors import NotFound
from geopush.fields import RequestBody


class CustomerRecord(RequestBody):
    """A customer as the CRM sends one (SPEC section 7), the one check of one: each row of
    `POST /v1/customers/import` is this model. Absent is unknown; a customers import
    replaces the name and language it has with what the file says."""

    customer_id: CrmId
    first_name: LongText | None = None
    language: Language | None = None
    created_at: DateOrTime | None = None

_PROFILE = """
SELECT c.customer_id, c.first_name, c.language, c.created_at, c.imported_at, c.segment,
       c.r_score, c.f_score, c.a_score, c.recency_days, c.frequency, c.amount, c.types,
       c.segment_computed_at,
       (SELECT r.categories FROM customer_recommendations r
        WHERE r.customer_id = c.customer_id) AS recommended_categories
FROM customers c WHERE c.customer_id = $1
"""
# Apart: devices are distributed by device id, not by customer (a Citus cluster cannot join
# them with the customer's row in one statement).
_DEVICES = "SELECT count(*) FROM devices WHERE customer_id = $1"


async def customer_row(pool: asyncpg.Pool, customer_id: str) -> dict[str, Any]:
    """The customer's profile row (`GET /v1/customers/{id}`); `NotFound` when unknown."""
    row = await pool.fetchrow(_PROFILE, customer_id)
    if row is None:
        raise NotFound("customer")
    return {**dict(row), "devices": await pool.fetchval(_DEVICES, customer_id)}
