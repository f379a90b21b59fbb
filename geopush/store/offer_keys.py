"""This process's set of the active offers' (trigger, target) keys, kept in step with PostgreSQL.

A batch's events are decided only when some active offer could match one of them. Knowing
that from memory saves the offer query of every batch whose events nobody targets (an exit
where only `enter` offers run, a fence no offer names). Every statement that changes
`offers` sends NOTIFY on `geopush_offers` (`store/offers.py: notify_offers_changed`, in
the writer's transaction; not a trigger, which Citus refuses on reference tables); each
process LISTENs and re-reads the keys, as the geofence index does. The
handlers that change offers also reload before answering, so their own process never lags.

Until the first load, and while the listener is lost, the keys are unknown and every event
is decided as before (the offer query runs): a stale set can cost a query, never a decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

CHANNEL = "geopush_offers"
_DEBOUNCE_S = 0.05
_KEYS = """
SELECT trigger, geofence_ids, store_ids FROM offers
WHERE deleted_at IS NULL AND status = 'active'
"""


@dataclass
class LiveOfferKeys:
    # ("enter", "geofence:<id>") and ("enter", "store:<id>"); None: not known, decide all.
    keys: frozenset[tuple[str, str]] | None = None
    version: int = 0
    _dirty: asyncio.Event = field(default_factory=asyncio.Event)
    _reloading: asyncio.Lock = field(default_factory=asyncio.Lock)

    def may_match(self, events: Iterable[tuple[str, str, str | None]]) -> bool:
        """Whether an active offer could be a candidate for one of these (trigger,
        geofence id, store id) events; True whenever the keys are not known."""
        keys = self.keys
        if keys is None:
            return True
        for trigger, geofence_id, store_id in events:
            if (trigger, "geofence:" + geofence_id) in keys:
                return True
            if store_id is not None and (trigger, "store:" + store_id) in keys:
                return True
        return False

    async def reload(self, pool: asyncpg.Pool) -> None:
        """Re-read every active offer's keys (one query; offers are few)."""
        async with self._reloading:
            rows = await pool.fetch(_KEYS)
            keys: set[tuple[str, str]] = set()
            for r in rows:
                keys.update((r["trigger"], f"geofence:{g}") for g in r["geofence_ids"] or ())
                keys.update((r["trigger"], f"store:{s}") for s in r["store_ids"] or ())
            self.keys = frozenset(keys)
            self.version += 1

    async def follow(self, pool: asyncpg.Pool, dsn: str) -> None:
        """Run forever: listen for offer changes and reload; call as a background task."""
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(dsn)
                await conn.add_listener(CHANNEL, self._on_notify)
                await self.reload(pool)  # catch up on anything missed while not listening
                while not conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._dirty.wait(), timeout=1.0)
                    if self._dirty.is_set():
                        await asyncio.sleep(_DEBOUNCE_S)  # fold a burst of changes
                        self._dirty.clear()
                        await self.reload(pool)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database restarts: retry, never die
                self.keys = None  # changes may be missed until listening again
                log.warning("offer listener lost: %s; retrying", type(exc).__name__)
                await asyncio.sleep(1.0)
            finally:
                if conn is not None and not conn.is_closed():
                    await conn.close()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, _payload: str) -> None:
        self._dirty.set()
