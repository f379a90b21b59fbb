"""A geofence import, streamed: a GeoJSON FeatureCollection as `POST /v1/geofences/import`
and `geopush import geofences` take it.

Every MiB of the stream is decoded and checked in a worker thread as it arrives
(`FeatureCollectionReader` hands out each finished feature), so the event loop never holds
a whole file and only the checked rows are kept. The 50,001st feature ends the import at
once (`TooManyFeatures`). No database connection is taken until every feature is checked;
then one transaction creates the valid ones, in batches, and the answer lists the others
by index.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterable
from typing import Any

import asyncpg

from geopush.config import Config
from geopush.errors import TooLarge
from geopush.geo.feature_collection import FeatureCollectionError, FeatureCollectionReader
from geopush.geo.geometry import GeometryError
from geopush.places.geofences import MAX_IMPORT_FEATURES, check_room, feature_to_geofence
from geopush.store.geofence_index import notify_changed

#: Body bytes decoded and checked per trip to the worker thread.
CHECK_BLOCK = 1024 * 1024
#: Within a trip, bytes decoded and checked between pauses for the event loop's thread
#: (a few milliseconds of work), and the pause.
_SLICE = 16 * 1024
_GIL_PAUSE_S = 0.0005
#: Geofences per INSERT: each statement's arguments are encoded on the event loop.
INSERT_ROWS = 1000


class TooManyFeatures(TooLarge):
    """More than `MAX_IMPORT_FEATURES` features (413)."""


class CheckedFeatures:
    """The features of one import, decoded and checked block by block (in a worker thread).

    Only what will be written is kept, as flat tuples of strings and numbers (the geometry
    as JSON text): the garbage collector stops tracking those after one look, so tens of
    thousands of checked features do not lengthen its full passes.
    """

    def __init__(self, default_dwell_s: int) -> None:
        self.reader = FeatureCollectionReader()
        self.default_dwell_s = default_dwell_s
        # (index, name, geometry JSON, dwell_s, area_m2, store_external_id)
        self.good: list[tuple[int, str, str, int, float, str | None]] = []
        self.errors: list[dict[str, Any]] = []

    def take(self, data: bytes, final: bool = False) -> None:
        """Decode and check `data`, the next bytes of the stream (in a worker thread).

        The bytes are taken a slice at a time, with a pause for the GIL after each: the
        event loop thread then gets it within a millisecond or two, instead of waiting out
        the interpreter's switch interval on every wake-up while this thread computes.
        """
        for at in range(0, max(len(data), 1), _SLICE):
            last = final and at + _SLICE >= len(data)
            self._take(data[at:at + _SLICE], last)
            time.sleep(_GIL_PAUSE_S)

    def _take(self, data: bytes, final: bool) -> None:
        start = self.reader.features_seen
        features = self.reader.feed(data, final=final)
        if self.reader.features_seen > MAX_IMPORT_FEATURES:
            raise TooManyFeatures(f"at most {MAX_IMPORT_FEATURES} features per import")
        for i, feature in enumerate(features, start):
            try:
                fields = feature_to_geofence(feature, self.default_dwell_s)
            except GeometryError as exc:
                self.errors.append({"index": i, "reason": exc.reason, "message": exc.message})
            except (ValueError, TypeError) as exc:
                self.errors.append({"index": i, "reason": "invalid_feature", "message": str(exc)})
            else:
                self.good.append((i, fields["name"], json.dumps(fields["geometry"]),
                                  fields["dwell_s"], fields["area_m2"],
                                  fields["store_external_id"]))
        if final and (self.reader.collection_type != "FeatureCollection"
                      or not self.reader.has_features):
            raise FeatureCollectionError("expected a GeoJSON FeatureCollection")

    def rows(self, stores: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The rows to insert; features naming an unknown store join the errors."""
        rows = []
        for i, name, geometry, dwell_s, area, ext in self.good:
            if ext and ext not in stores:
                self.errors.append({"index": i, "reason": "unknown_store",
                                    "message": f"no store with external_id {ext!r}"})
                continue
            rows.append((uuid.uuid4(), name, stores.get(ext) if ext else None, geometry,
                         dwell_s, True, area))
        self.errors.sort(key=lambda e: e["index"])
        return rows


async def check_features(chunks: AsyncIterable[bytes], default_dwell_s: int
                         ) -> CheckedFeatures:
    """Decode and check a FeatureCollection stream, a block at a time, off the event loop."""
    checked = CheckedFeatures(default_dwell_s)
    pending = bytearray()
    async for chunk in chunks:
        pending += chunk
        if len(pending) >= CHECK_BLOCK:
            block = bytes(pending)
            pending.clear()
            await asyncio.to_thread(checked.take, block)
    await asyncio.to_thread(checked.take, bytes(pending), True)
    return checked


_INSERT = """
INSERT INTO geofences (geofence_id, name, store_id, geometry, dwell_s, enabled, area_m2)
SELECT id, name, store_id, geometry::jsonb, dwell_s, enabled, area_m2
FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::int[], $6::bool[],
            $7::float8[]) AS t(id, name, store_id, geometry, dwell_s, enabled, area_m2)
"""


async def create_geofences(pool: asyncpg.Pool, checked: CheckedFeatures, max_geofences: int
                           ) -> dict[str, Any]:
    """Create the checked features in one transaction; `{"created", "errors"}`."""
    externals = sorted({g[5] for g in checked.good if g[5]})
    async with pool.acquire() as conn, conn.transaction():
        await check_room(conn, len(checked.good), max_geofences)
        stores = {
            r["external_id"]: r["store_id"]
            for r in await conn.fetch(
                "SELECT external_id, store_id FROM stores WHERE external_id = ANY($1)",
                externals)
        }
        rows = await asyncio.to_thread(checked.rows, stores)
        for start in range(0, len(rows), INSERT_ROWS):
            cols = zip(*rows[start:start + INSERT_ROWS], strict=True)
            await conn.execute(_INSERT, *[list(c) for c in cols])
        if rows:
            await notify_changed(conn)
    return {"created": len(rows), "errors": checked.errors}


async def import_geofence_stream(pool: asyncpg.Pool, config: Config,
                                 chunks: AsyncIterable[bytes]) -> dict[str, Any]:
    """Check, then create, the geofences of a FeatureCollection stream.

    Raises FeatureCollectionError (not one) or TooManyFeatures; nothing is written then.
    """
    checked = await check_features(chunks, config.geo.default_dwell_s)
    return await create_geofences(pool, checked, config.limits.max_geofences)
