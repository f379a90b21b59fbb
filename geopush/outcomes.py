"""What deciding offers and crediting loyalty share, so neither imports the other.

`geopush.ingest` decides a visit's offers and asks `geopush.loyalty` to credit its
check-ins; loyalty, in turn, has a completed challenge's reward offer decided like any
other. Both depend on this module instead of on each other:

- `DecisionSummary`, what a decision counted, observed once its transaction commits;
- `lock_customer`, the one per-customer advisory lock: decisions (cooldown, daily cap across
  a customer's phones) and loyalty credits (daily check-in limit, badges, challenges) take
  the same lock, always after the device row, so the order never deadlocks;
- `DecideOffers`, the shape of `geopush.ingest.decisions.decide_offers`, which the ingest
  path hands to loyalty for reward pushes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

import asyncpg

from geopush import metrics

if TYPE_CHECKING:
    from geopush.config import Config
    from geopush.geo.visits import VisitEvent

_CUSTOMER_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))"


async def lock_customer(conn: asyncpg.Connection, customer_id: str) -> None:
    """Hold this customer's lock until the transaction ends (every process, every phone)."""
    await conn.execute(_CUSTOMER_LOCK, "customer:" + customer_id)


@dataclass
class DecisionSummary:
    """Counts for the metrics, observed once the transaction has committed."""

    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    cancelled: int = 0

    def observe(self) -> None:
        for (outcome, reason), n in self.outcomes.items():
            metrics.DECISIONS.labels(outcome, reason).inc(n)
        if self.cancelled:
            metrics.DELIVERIES.labels("cancelled", "left_geofence").inc(self.cancelled)


class DecideOffers(Protocol):
    """Decide `offers` for `events` of a device whose row the caller has locked."""

    async def __call__(
        self,
        conn: asyncpg.Connection,
        config: Config,
        store_of: dict[str, str | None],
        device: asyncpg.Record,
        events: list[VisitEvent],
        event_ids: list[UUID | None],
        now: datetime,
        offers: list[Any],
        store_ids: list[str],
    ) -> DecisionSummary: ...
