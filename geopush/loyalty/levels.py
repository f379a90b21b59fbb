"""Balances and levels, derived from the ledger (never stored): sums over one subject's rows,
read from the `loyalty_subject` index."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg

from geopush.config import Config
from geopush.loyalty.rules import level_for, subject_of

# Lifetime points: everything earned or adjusted; redeeming spends points, it does not
# lower a level.
TOTALS = """
SELECT coalesce(sum(points), 0)::bigint AS points,
       coalesce(sum(points) FILTER (WHERE reason <> 'redemption'), 0)::bigint AS lifetime
FROM loyalty_ledger WHERE subject = $1
"""


async def subject_totals(conn: asyncpg.Connection | asyncpg.Pool, subject: str
                         ) -> tuple[int, int]:
    """(balance, lifetime points) of a subject."""
    row = await conn.fetchrow(TOTALS, subject)
    return int(row["points"]), int(row["lifetime"])


async def subject_level(
    conn: asyncpg.Connection,
    config: Config,
    customer_id: str | None,
    device_id: UUID,
    offers: Sequence[Any],
) -> str | None:
    """The subject's level, fetched only when one of the offers targets levels."""
    if not any(getattr(o, "levels", ()) for o in offers):
        return None
    _, lifetime = await subject_totals(conn, subject_of(customer_id, device_id))
    return level_for(lifetime, config.loyalty.levels)


# A customer is known from the CRM import or from a device linked with a verified proof:
# a shopper who signed up in the app has points before the CRM's next export.
_KNOWN_CUSTOMER = """
SELECT EXISTS (SELECT 1 FROM customers WHERE customer_id = $1)
    OR EXISTS (SELECT 1 FROM devices WHERE customer_id = $1)
"""


async def customer_known(conn: asyncpg.Connection | asyncpg.Pool, customer_id: str) -> bool:
    """Whether geopush knows this customer (SPEC section 11's points desk serves any)."""
    return bool(await conn.fetchval(_KNOWN_CUSTOMER, customer_id))
