"""`POST /v1/geofences/import` (and `geopush import geofences`): a GeoJSON FeatureCollection,
streamed.

The body is read in chunks (408 when it stalls, 413 past `[limits] max_import_bytes`, or
from Content-Length before reading anything) and every MiB of it is decoded and checked in
a worker thread as it arrives (`FeatureCollectionReader` hands out each finished feature),
so the event loop never holds a whole body and only the checked rows are kept. The 50,001st
feature ends the import with 413 at once. No database connection is taken until every
feature is checked; then one transaction creates the valid ones, in batches, and the
answer lists the others by index.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterable
from typing import Any

import asyncpg
from aiohttp import web

from geopush.api.auth import MARKETER, require_role
from geopush.api.body import _has_unstorable_text, body_chunks
from geopush.api.errors import ApiError
from geopush.api.import_slots import running_import
from geopush.config import Config
from geopush.geo.feature_collection import FeatureCollectionError, FeatureCollectionReader
from geopush.geo.geometry import GeometryError, area_m2, parse_geometry
from geopush.runtime import RUNTIME
from geopush.store.geofence_index import notify_changed

MAX_IMPORT_FEATURES = 50_000
#: Body bytes decoded and checked per trip to the worker thread.
CHECK_BLOCK = 1024 * 1024
#: Geofences per INSERT: each statement's arguments are encoded on the event loop.
INSERT_ROWS = 1000


class TooManyFeatures(Exception):
    """More than `MAX_IMPORT_FEATURES` features (the API answers 413)."""


def feature_to_geofence(feature: Any, default_dwell_s: int) -> dict[str, Any]:
    """One GeoJSON Feature as geofence fields; ValueError/GeometryError say why not."""
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        raise ValueError("not a GeoJSON Feature")
    if _has_unstorable_text(feature):
        raise ValueError("a NUL character or a lone surrogate in a string")
    props = feature.get("properties") or {}
    if not isinstance(props, dict):
        raise ValueError("properties must be an object")
    geometry = feature.get("geometry")
    if isinstance(geometry, dict) and geometry.get("type") == "Point":
        radius = props.get("radius_m")
        if radius is None:
            raise ValueError("a Point feature needs properties.radius_m")
        geometry = {"type": "Circle", "center": geometry.get("coordinates"), "radius_m": radius}
    fence = parse_geometry(geometry)
    dwell = props.get("dwell_s", default_dwell_s)
    if isinstance(dwell, bool) or not isinstance(dwell, int) or not 0 <= dwell <= 7 * 86400:
        raise ValueError("properties.dwell_s must be a whole number of seconds")
    name = props.get("name") or f"geofence {feature.get('id', '')}".strip()
    store_ext = props.get("store_external_id")
    return {"name": str(name)[:200], "geometry": geometry, "area_m2": area_m2(fence),
            "dwell_s": dwell, "store_external_id": None if store_ext is None else str(store_ext)}


class CheckedFeatures:
    """The features of one import, decoded and checked block by block (in a worker thread).

    Only what will be written is kept: the fields, with the geometry as JSON text.
    """

    def __init__(self, default_dwell_s: int) -> None:
        self.reader = FeatureCollectionReader()
        self.default_dwell_s = default_dwell_s
        self.good: list[tuple[int, dict[str, Any]]] = []
        self.errors: list[dict[str, Any]] = []

    def take(self, data: bytes, final: bool = False) -> None:
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
                fields["geometry"] = json.dumps(fields["geometry"])
                self.good.append((i, fields))
        if final and (self.reader.collection_type != "FeatureCollection"
                      or not self.reader.has_features):
            raise FeatureCollectionError("expected a GeoJSON FeatureCollection")

    def rows(self, stores: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The rows to insert; features naming an unknown store join the errors."""
        rows = []
        for i, g in self.good:
            ext = g["store_external_id"]
            if ext and ext not in stores:
                self.errors.append({"index": i, "reason": "unknown_store",
                                    "message": f"no store with external_id {ext!r}"})
                continue
            rows.append((uuid.uuid4(), g["name"], stores.get(ext) if ext else None,
                         g["geometry"], g["dwell_s"], True, g["area_m2"]))
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


async def create_geofences(pool: asyncpg.Pool, checked: CheckedFeatures) -> dict[str, Any]:
    """Create the checked features in one transaction; `{"created", "errors"}`."""
    externals = sorted({g["store_external_id"] for _, g in checked.good
                        if g["store_external_id"]})
    async with pool.acquire() as conn, conn.transaction():
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
    return await create_geofences(pool, checked)


async def import_geofences(request: web.Request) -> web.Response:
    await require_role(request, *MARKETER)
    rt = request.app[RUNTIME]
    limit = rt.config.limits.max_import_bytes
    what = "import ([limits] max_import_bytes)"
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, "too_large", f"{what} larger than {limit} bytes")
    with running_import(request):
        try:
            result = await import_geofence_stream(
                rt.pool, rt.config, body_chunks(request, limit, what=what))
        except FeatureCollectionError as exc:
            raise ApiError(400, "invalid", str(exc)) from None
        except TooManyFeatures as exc:
            raise ApiError(413, "too_large", str(exc)) from None
    await rt.fences.reload(rt.pool)
    # Up to 50,000 errors: serialized off the event loop too.
    body = await asyncio.to_thread(json.dumps, result)
    return web.Response(body=body.encode(), content_type="application/json")
