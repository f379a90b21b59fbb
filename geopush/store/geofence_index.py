"""This process's in-memory geofence index, kept in step with PostgreSQL.

Every geofence change sends NOTIFY on `geopush_geofences` in its own transaction, with the
fence's id (empty for a bulk change); each process LISTENs on a connection of its own and,
when told, re-reads and re-parses only the fences named (everything's small columns and the
changed geometries for a bulk change), then rebuilds its index from the fences it keeps
parsed, so a change reaches every process within about a second, at 100k fences too. A lost
listening connection is reopened and followed by a full reload, so a missed notification
cannot leave a stale index behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from geopush import metrics
from geopush.geo.geometry import Fence, GeometryError, parse_geometry
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
class _Cached:
    """A parsed fence and the `updated_at` it was parsed at (geometry changes move it)."""

    fence: Fence
    updated_at: datetime


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
    # Every enabled fence, parsed once: a change re-reads and re-parses only what changed
    # (parsing and validating is most of a full load: seconds at 100k fences), then the
    # index is rebuilt from these in a worker thread.
    _parsed: dict[str, _Cached] = field(default_factory=dict)
    # Fences named by notifications since the last reload; None: reload everything.
    _changed: set[str] | None = field(default_factory=set)
    _reloading: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def reload(self, pool: asyncpg.Pool, changed: set[str] | None = None) -> None:
        """Bring the index up to date: the fences in `changed` (ids), or all of them.

        One reload at a time in a process: each starts from what the last one left, so a
        handler's reload and the listener's cannot undo each other's changes.
        """
        async with self._reloading:
            await self._reload(pool, changed)

    async def _reload(self, pool: asyncpg.Pool, changed: set[str] | None) -> None:
        loop = asyncio.get_running_loop()
        if changed is None or not self.loaded:
            rows = await pool.fetch(_ALL_HEADS)
            heads = {str(r["geofence_id"]): r for r in rows}
            stale = [gid for gid, r in heads.items()
                     if (c := self._parsed.get(gid)) is None or c.updated_at != r["updated_at"]]
            parsed = dict(self._parsed)
            for gid in list(parsed):
                if gid not in heads:
                    del parsed[gid]
            info = {gid: _info(r) for gid, r in heads.items()}
        else:
            rows = await pool.fetch(_SOME_HEADS, [UUID(g) for g in changed if _is_uuid(g)])
            heads = {str(r["geofence_id"]): r for r in rows if r["enabled"]}
            stale = list(heads)
            parsed = dict(self._parsed)
            info = dict(self.info)
            for gid in changed:
                if gid not in heads:
                    parsed.pop(gid, None)
                    info.pop(gid, None)
            info.update({gid: _info(r) for gid, r in heads.items()})
        if stale:
            # Geometry as text, decoded in a worker thread in chunks: ingest must not wait.
            for start in range(0, len(stale), _FETCH_CHUNK):
                part = [UUID(g) for g in stale[start:start + _FETCH_CHUNK]]
                shapes = await pool.fetch(_GEOMETRIES, part)
                parsed.update(await loop.run_in_executor(None, _parse, shapes))
        for gid in [g for g in info if g not in parsed]:  # unparseable: never indexed
            del info[gid]
        buffer_m = self.buffer_m
        index = await loop.run_in_executor(
            None, lambda: GeofenceIndex.build(
                [(gid, c.fence) for gid, c in parsed.items()]).prepare(buffer_m))
        self.index, self.info, self._parsed, self.loaded = index, info, parsed, True
        self.dwell_s = {gid: f.dwell_s for gid, f in info.items()}
        self.version += 1
        metrics.GEOFENCES_LOADED.set(len(info))
        log.info("geofence index loaded",
                 extra={"geofences": len(info), "parsed": len(stale),
                        "partial": changed is not None})

    async def follow(self, pool: asyncpg.Pool, dsn: str) -> None:
        """Run forever: listen for changes and reload; call as a background task."""
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(dsn)
                await conn.add_listener(CHANNEL, self._on_notify)
                self._changed = set()
                await self.reload(pool)  # catch up on anything missed while not listening
                while not conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._dirty.wait(), timeout=1.0)
                    if self._dirty.is_set():
                        await asyncio.sleep(_DEBOUNCE_S)  # fold a burst of changes
                        self._dirty.clear()
                        changed, self._changed = self._changed, set()
                        await self.reload(pool, changed)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database restarts: retry, never die
                log.warning("geofence listener lost: %s; retrying", type(exc).__name__)
                await asyncio.sleep(1.0)
            finally:
                if conn is not None and not conn.is_closed():
                    await conn.close()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if not payload:
            self._changed = None  # a bulk change (an import, a store deleted): all of them
        elif self._changed is not None:
            self._changed.add(payload)
        self._dirty.set()


# A full reload reads every fence's small columns; geometry only for what changed.
_ALL_HEADS = "SELECT geofence_id, store_id, dwell_s, updated_at FROM geofences WHERE enabled"
_SOME_HEADS = """
SELECT geofence_id, store_id, dwell_s, updated_at, enabled FROM geofences
WHERE geofence_id = ANY($1::uuid[])
"""
_GEOMETRIES = """
SELECT geofence_id, geometry::text AS geometry, updated_at FROM geofences
WHERE geofence_id = ANY($1::uuid[])
"""
_FETCH_CHUNK = 5000


def _is_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True


def _info(row: asyncpg.Record) -> FenceInfo:
    store = row["store_id"]
    return FenceInfo(str(row["geofence_id"]), str(store) if store else None, row["dwell_s"])


def _parse(rows: list[asyncpg.Record]) -> dict[str, _Cached]:
    """Parsed fences from their rows (runs in a worker thread)."""
    out: dict[str, _Cached] = {}
    for row in rows:
        gid = str(row["geofence_id"])
        try:
            fence = parse_geometry(json.loads(row["geometry"]))
        except GeometryError:  # stored geometry was validated; never expected
            log.error("stored geofence has invalid geometry", extra={"geofence_id": gid})
            continue
        out[gid] = _Cached(fence, row["updated_at"])
    return out


async def notify_changed(conn: asyncpg.Connection, geofence_id: UUID | None = None) -> None:
    """Tell every process to reload; delivered when the caller's transaction commits."""
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, str(geofence_id or ""))
