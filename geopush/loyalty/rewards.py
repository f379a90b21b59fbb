"""A completed challenge's reward offer, through the normal decision (SPEC sections 4, 11).

The offer (trigger `reward`) is decided like any other: schedule, segment, level, consent,
caps, quiet hours and the rest still apply, and a suppression is recorded with its reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from geopush.codes import Trigger
from geopush.config import Config
from geopush.geo.visits import VisitEvent
from geopush.outcomes import DecideOffers, DecisionSummary
from geopush.store.offers import offer_from_row


@dataclass(frozen=True)
class Completion:
    """A challenge a transaction completed, with what its reward offer needs."""

    challenge_id: str
    offer_id: str | None
    at: datetime
    geofence_id: str | None
    event_id: UUID | None

_REWARD_OFFERS = """
SELECT * FROM offers
WHERE offer_id = ANY($1::uuid[]) AND deleted_at IS NULL AND status = 'active'
  AND trigger = 'reward'
"""


async def decide_rewards(
    conn: asyncpg.Connection,
    config: Config,
    device: asyncpg.Record,
    completions: Sequence[Completion],
    store_of: dict[str, str | None],
    now: datetime,
    decide: DecideOffers,
) -> DecisionSummary:
    """Decide the reward offer of each completion for `device` (locked by the caller), with
    `decide` (the ingest path's `decide_offers`: loyalty does not import ingest)."""
    summary = DecisionSummary()
    wanted = sorted({c.offer_id for c in completions if c.offer_id})
    if not wanted:
        return summary
    offers = {str(r["offer_id"]): offer_from_row(r)
              for r in await conn.fetch(_REWARD_OFFERS, [UUID(o) for o in wanted])}
    for completion in completions:
        offer = offers.get(completion.offer_id or "")
        if offer is None:
            continue
        event = VisitEvent(Trigger.REWARD, completion.geofence_id, completion.at)  # type: ignore[arg-type]
        store_id = store_of.get(completion.geofence_id) if completion.geofence_id else None
        result = await decide(
            conn, config, {completion.geofence_id: store_id} if completion.geofence_id else {},
            device, [event], [completion.event_id], now, [offer],
            [store_id] if store_id else [],
        )
        summary.outcomes.update(result.outcomes)
    return summary
