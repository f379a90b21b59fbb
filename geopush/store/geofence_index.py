"""This process's in-memory geofence index, kept in step with PostgreSQL.

Every geofence change sends NOTIFY on `geopush_geofences` in its own transaction; each
process LISTENs on a connection of its own and rebuilds its index when told, so a change
reaches every process within about a second. A lost listening connection is reopened and
followed by a full reload, so a missed notification cannot leave a stale index behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg

from geopush import metrics
from geopush.geo.geometry import GeometryError, parse_geometry
from geopush.geo.index import GeofenceIndex

log = logging.getLogger(__name__)

CHANNEL = "geopush_geofences"
_DEBOUNCE_S = 0.05


@dataclass(frozen=True)
class FenceInfo:
    geofence_id: str
    store_id: str | None
    dwell_s: int


@dataclass
class LiveGeofenceIndex:
    index: GeofenceIndex = field(default_factory=lambda: GeofenceIndex.build([]))
    info: dict[str, FenceInfo] = field(default_factory=dict)
    # geofence id -> dwell_s, built with the index: ingest reads it on every batch.
    dwell_s: dict[str, int] = field(default_factory=dict)
    loaded: bool = False
    version: int = 0
    # The exit buffer ingest asks for: the index's candidate grid for it is built with the
    # index, off the loop, not by the first batch after a reload.
    buffer_m: float = 20.0
    _dirty: asyncio.Event = field(default_factory=asyncio.Event)

    async def reload(self, pool: asyncpg.Pool) -> None:
        # Geometry as text, decoded with the rest in a worker thread: thousands of large
        # fences are seconds of JSON decoding and validation that ingest must not wait on.
        rows = await pool.fetch(
            "SELECT geofence_id, store_id, geometry::text AS geometry, dwell_s"
            " FROM geofences WHERE enabled"
        )
        buffer_m = self.buffer_m
        index, info = await asyncio.get_running_loop().run_in_executor(
            None, _build, rows, buffer_m)
        self.index, self.info, self.loaded = index, info, True
        self.dwell_s = {gid: f.dwell_s for gid, f in info.items()}
        self.version += 1
        metrics.GEOFENCES_LOADED.set(len(info))
        log.info("geofence index loaded", extra={"geofences": len(info)})

    async def follow(self, pool: asyncpg.Pool, dsn: str) -> None:
        """Run forever: listen for changes and reload; call as a background task."""
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
                log.warning("geofence listener lost: %s; retrying", type(exc).__name__)
                await asyncio.sleep(1.0)
            finally:
                if conn is not None and not conn.is_closed():
                    await conn.close()

    def _on_notify(self, *_: Any) -> None:
        self._dirty.set()


def _build(rows: list[asyncpg.Record],
           buffer_m: float) -> tuple[GeofenceIndex, dict[str, FenceInfo]]:
    """The index (with its candidate grid for `buffer_m`) and the fences' details from
    their rows (runs in a worker thread)."""
    entries = []
    info: dict[str, FenceInfo] = {}
    for row in rows:
        gid = str(row["geofence_id"])
        try:
            fence = parse_geometry(json.loads(row["geometry"]))
        except GeometryError:  # stored geometry was validated; never expected
            log.error("stored geofence has invalid geometry", extra={"geofence_id": gid})
            continue
        entries.append((gid, fence))
        store = row["store_id"]
        info[gid] = FenceInfo(gid, str(store) if store else None, row["dwell_s"])
    return GeofenceIndex.build(entries).prepare(buffer_m), info


async def notify_changed(conn: asyncpg.Connection, geofence_id: UUID | None = None) -> None:
    """Tell every process to reload; delivered when the caller's transaction commits."""
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(geofence_id or ""))
