"""This process's in-memory geofence index, kept in step with PostgreSQL.

Every geofence change sends NOTIFY on `geopush_geofences` in its own transaction, with the
fence's id (empty for a bulk change); each process LISTENs on a connection of its own and,
when told, re-reads and re-parses only the fences named (everything's small columns and the
changed geometries for a bulk change). A change then costs one fence: the changed fences go
into the small overlay of a `LayeredIndex`, and the big base index is rebuilt only at start,
after a bulk change, or once the overlay has grown past `_FOLD_AT` fences. A lost
listening connection is reopened and followed by a full reload, so a missed notification
cannot leave a stale index behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from geopush import metrics
from geopush.geo.geometry import Fence, GeometryError, parse_geometry
from geopush.geo.layered_index import LayeredIndex

log = logging.getLogger(__name__)

CHANNEL = "geopush_geofences"
_DEBOUNCE_S = 0.05
# Fences changed since the base index was built, beyond which they are folded into a new
# base: the overlay is searched on every lookup that finds anything, so it stays small.
_FOLD_AT = 2000


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
    index: LayeredIndex = field(default_factory=lambda: LayeredIndex.build([]))
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
    # Fences changed since the base index was built: the overlay's (and deleted) ids.
    _overlay_ids: set[str] = field(default_factory=set)
    _reloading: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def reload(self, pool: asyncpg.Pool, changed: set[str] | None = None) -> None:
        """Bring the index up to date: the fences in `changed` (ids), or all of them.

        One reload at a time in a process: each starts from what the last one left, so a
        handler's reload and the listener's cannot undo each other's changes.
        """
        async with self._reloading:
            await self._reload(pool, changed)

    async def _reload(self, pool: asyncpg.Pool, changed: set[str] | None) -> None:
        if changed is None or not self.loaded:
            await self._reload_all(pool)
        else:
            await self._reload_some(pool, changed)
        self.version += 1
        metrics.GEOFENCES_LOADED.set(len(self.info))

    async def _reload_all(self, pool: asyncpg.Pool) -> None:
        """Every fence's small columns; geometry only where it changed since it was parsed."""
        heads = {str(r["geofence_id"]): r for r in await pool.fetch(_ALL_HEADS)}
        stale = [gid for gid, r in heads.items()
                 if (c := self._parsed.get(gid)) is None or c.updated_at != r["updated_at"]]
        parsed = {gid: c for gid, c in self._parsed.items() if gid in heads}
        parsed.update(await self._fetch_parsed(pool, stale))
        info = {gid: _info(r) for gid, r in heads.items() if gid in parsed}
        if self.loaded:
            # A catch-up after reconnecting usually finds nothing changed; a deleted store,
            # a few fences: the overlay takes them, as it takes single changes.
            touched = set(stale) | {gid for gid in self._parsed if gid not in heads}
            if len(self._overlay_ids | touched) <= _FOLD_AT:
                await self._apply_some(parsed, info, touched)
                # Small columns may have changed anywhere (a store's fences moved to another).
                self.info, self.dwell_s = info, {gid: f.dwell_s for gid, f in info.items()}
                return
        await self._fold(parsed, info)
        self.loaded = True

    async def _reload_some(self, pool: asyncpg.Pool, changed: set[str]) -> None:
        """The fences named by notifications: re-read, re-parsed, into the overlay."""
        rows = await pool.fetch(_SOME_HEADS, [UUID(g) for g in changed if _is_uuid(g)])
        heads = {str(r["geofence_id"]): r for r in rows if r["enabled"]}
        fresh = await self._fetch_parsed(pool, list(heads))
        info = {gid: _info(r) for gid, r in heads.items() if gid in fresh}
        if len(self._overlay_ids | changed) > _FOLD_AT:
            parsed = {gid: c for gid, c in self._parsed.items() if gid not in changed}
            parsed.update(fresh)
            everything = {gid: i for gid, i in self.info.items() if gid not in changed}
            everything.update(info)
            await self._fold(parsed, everything)
            return
        await self._apply_some(fresh, info, changed, partial=True)

    async def _apply_some(self, fresh: dict[str, _Cached], info: dict[str, FenceInfo],
                          touched: set[str], partial: bool = False) -> None:
        """Put the `touched` fences (those still there: in `fresh`/`info`) in the overlay.

        The process's 100k-entry maps are changed in place, after the overlay is built and
        without an await in between, so a batch sees the old state or the new, never a mix,
        and no change copies them.
        """
        overlay_ids = self._overlay_ids | touched
        overlay = []
        for gid in sorted(overlay_ids):
            cached = fresh.get(gid) if gid in touched else self._parsed.get(gid)
            if cached is not None and (gid in info or gid not in touched):
                overlay.append((gid, cached.fence))
        base, buffer_m = self.index, self.buffer_m
        index = await asyncio.get_running_loop().run_in_executor(
            None, lambda: base.with_changes(overlay, overlay_ids).prepare(buffer_m))
        for gid in touched:
            if gid in info:
                self._parsed[gid], self.info[gid] = fresh[gid], info[gid]
                self.dwell_s[gid] = info[gid].dwell_s
            else:
                self._parsed.pop(gid, None)
                self.info.pop(gid, None)
                self.dwell_s.pop(gid, None)
        self.index, self._overlay_ids = index, overlay_ids
        log.info("geofence index updated",
                 extra={"geofences": len(self.info), "changed": len(touched),
                        "overlay": index.overlay_size, "partial": partial})

    async def _fold(self, parsed: dict[str, _Cached], info: dict[str, FenceInfo]) -> None:
        buffer_m = self.buffer_m
        index = await asyncio.get_running_loop().run_in_executor(
            None, lambda: LayeredIndex.build(
                [(gid, c.fence) for gid, c in parsed.items()]).prepare(buffer_m))
        self.index, self.info, self._parsed = index, info, parsed
        self.dwell_s = {gid: f.dwell_s for gid, f in info.items()}
        self._overlay_ids = set()
        # A base index is millions of long-lived objects (fences, arrays of shapes, answer
        # sets): left in the collector's oldest generation, each full collection would walk
        # them all, a pause of hundreds of milliseconds for every request in the process.
        # Frozen, they are skipped; they are still freed when the next base replaces them.
        gc.collect()
        gc.freeze()
        log.info("geofence index built", extra={"geofences": len(info)})

    async def _fetch_parsed(self, pool: asyncpg.Pool, ids: list[str]) -> dict[str, _Cached]:
        """Geometry as text, decoded in a worker thread in chunks: ingest must not wait."""
        out: dict[str, _Cached] = {}
        loop = asyncio.get_running_loop()
        for start in range(0, len(ids), _FETCH_CHUNK):
            part = [UUID(g) for g in ids[start:start + _FETCH_CHUNK]]
            shapes = await pool.fetch(_GEOMETRIES, part)
            out.update(await loop.run_in_executor(None, _parse, shapes))
        return out

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
