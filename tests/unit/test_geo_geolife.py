"""Real traces: GeoLife's two Beijing users against the Beijing Starbucks stores.

The first `FIXES_PER_USER` fixes of each user (20,000 of ~108,000: the pure-Python reference
needs ~0.2 ms a ping, so the whole file takes ~40 s; set GEOPUSH_GEOLIFE_FULL=1 to run all
217,653) go through the geo core the way ingest runs it, in batches of 500 (`filter_pings`,
`GeofenceIndex.locate`, `advance`), around
100-200 m circles centred on the 234 Beijing stores of the directory plus a few polygons laid
along the traces (so visits are certain, whatever the stores' 1 km rounding does). The
independent reference of tests/geo_reference.py must produce the same rejections and the same
events; pairs within 2 mm of an edge follow the implementation, as in the property tests.
"""

from __future__ import annotations

import math
import os
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta

import numpy as np
import pytest

from geopush.geo.filters import PingRules, filter_pings
from geopush.geo.geometry import parse_geometry
from geopush.geo.index import GeofenceIndex
from geopush.geo.visits import DeviceVisits, Step, VisitRules, advance
from tests.geo_reference import (
    RefCircle,
    RefFence,
    RefVisitState,
    Tri,
    ref_fence,
    ref_filter,
    ref_locate,
    ref_visits,
)
from tests.geolife import Fix, beijing_stores, geolife_fixes

BATCH = 500
FIXES_PER_USER = None if os.environ.get("GEOPUSH_GEOLIFE_FULL") == "1" else 20_000
RULES = VisitRules()
CELL = 0.01  # degrees: the reference's own coarse grid, unlike the index's STRtree


def store_geometries() -> dict[str, dict[str, object]]:
    """A circle of 100-200 m (stable per store number) around every Beijing store."""
    return {
        f"store-{s.number}": {
            "type": "Circle",
            "center": [s.lon, s.lat],
            "radius_m": 100 + zlib.crc32(s.number.encode()) % 101,
        }
        for s in beijing_stores()
    }


def trace_polygons(fixes: dict[str, tuple[Fix, ...]]) -> dict[str, dict[str, object]]:
    """Small rectangles and a hexagon (some with a hole) on fixes spread along each trace."""
    polygons: dict[str, dict[str, object]] = {}
    for uid, track in sorted(fixes.items()):
        for k in range(12):
            fix = track[(k * 2 + 1) * len(track) // 25]
            w = 0.0008 + 0.0002 * (k % 3)  # ~70-100 m east-west at 40°
            h = 0.0006
            x, y = fix.lon + 0.0002 * ((k % 5) - 2), fix.lat
            if k % 4 == 3:
                ring = [
                    [x + w * math.cos(a), y + h * math.sin(a)]
                    for a in np.linspace(0, 2 * math.pi, 7)[:-1]
                ]
                rings = [[*ring, ring[0]]]
            else:
                rings = [
                    [[x - w, y - h], [x + w, y - h], [x + w, y + h], [x - w, y + h], [x - w, y - h]]
                ]
                if k % 4 == 1:
                    q = w / 4
                    rings.append(
                        [
                            [x - q, y - q],
                            [x - q, y + q],
                            [x + q, y + q],
                            [x + q, y - q],
                            [x - q, y - q],
                        ]
                    )
            polygons[f"trace-{uid}-{k}"] = {"type": "Polygon", "coordinates": rings}
    return polygons


class ReferenceGrid:
    """The reference's candidate search: a dict of 0.01° cells, generous margins."""

    def __init__(self, refs: dict[str, RefFence], buffer_m: float) -> None:
        self.refs = refs
        self.cells: dict[tuple[int, int], list[str]] = {}
        for gid, ref in refs.items():
            if isinstance(ref, RefCircle):
                reach = (ref.radius_m + buffer_m) * 1.5 / 111_000
                x1, x2 = (
                    ref.lon - reach / math.cos(math.radians(ref.lat)),
                    ref.lon + reach / math.cos(math.radians(ref.lat)),
                )
                y1, y2 = ref.lat - reach, ref.lat + reach
            else:
                xs = [p[0] for poly in ref.polygons for ring in poly for p in ring]
                ys = [p[1] for poly in ref.polygons for ring in poly for p in ring]
                margin = buffer_m * 2 / 111_000 + 1e-6
                x1, x2 = min(xs) - 2 * margin, max(xs) + 2 * margin
                y1, y2 = min(ys) - margin, max(ys) + margin
            for i in range(math.floor(x1 / CELL), math.floor(x2 / CELL) + 1):
                for j in range(math.floor(y1 / CELL), math.floor(y2 / CELL) + 1):
                    self.cells.setdefault((i, j), []).append(gid)

    def candidates(self, lon: float, lat: float) -> list[str]:
        return self.cells.get((math.floor(lon / CELL), math.floor(lat / CELL)), [])


def batches(track: tuple[Fix, ...]) -> Iterator[list[dict[str, object]]]:
    for start in range(0, len(track), BATCH):
        yield [
            {
                "lat": f.lat,
                "lon": f.lon,
                "accuracy_m": 10.0,
                "ts": f.ts.isoformat().replace("+00:00", "Z"),
            }
            for f in track[start : start + BATCH]
        ]


@pytest.mark.slow
def test_geolife_traces_give_the_reference_events() -> None:
    fixes = {uid: track[:FIXES_PER_USER] for uid, track in geolife_fixes().items()}
    geometries = store_geometries() | trace_polygons(fixes)
    index = GeofenceIndex.build((gid, parse_geometry(g)) for gid, g in geometries.items())
    refs = {gid: ref_fence(g) for gid, g in geometries.items()}
    grid = ReferenceGrid(refs, RULES.exit_buffer_m)
    dwell_s = {gid: 300 if gid.startswith("store") else 120 for gid in geometries}

    totals: Counter[str] = Counter()
    for _uid, track in sorted(fixes.items()):
        state, last = DeviceVisits(last_ts=None, open={}), None
        ref_state, ref_last = RefVisitState(), None
        for raw in batches(track):
            now = _batch_now(raw)
            result = filter_pings(raw, last, now, PingRules())
            expected = ref_filter(raw, ref_last, now)
            assert not expected.speed_ambiguous
            assert [(i, r.value) for i, r in result.rejected] == expected.rejected
            assert [p.index for p in result.accepted] == [f.index for f in expected.accepted]
            totals.update(r.value for _, r in result.rejected)

            lons = np.array([p.lon for p in result.accepted])
            lats = np.array([p.lat for p in result.accepted])
            inside, near = index.locate(lons, lats, RULES.exit_buffer_m)
            steps = [
                Step(p.ts, i, n) for p, i, n in zip(result.accepted, inside, near, strict=True)
            ]
            state, events = advance(state, steps, dwell_s, RULES)

            ref_pings = []
            for k, fix in enumerate(expected.accepted):
                ins: dict[str, bool] = {}
                nrs: dict[str, bool] = {}
                for gid in grid.candidates(fix.lon, fix.lat):
                    want_in, want_near = ref_locate(
                        fix.lon, fix.lat, refs[gid], RULES.exit_buffer_m
                    )
                    ins[gid] = gid in inside[k] if want_in is Tri.AMBIGUOUS else want_in is Tri.IN
                    nrs[gid] = gid in near[k] if want_near is Tri.AMBIGUOUS else want_near is Tri.IN
                assert {g for g, v in ins.items() if v} == inside[k], fix
                assert {g for g, v in nrs.items() if v} == near[k], fix
                ref_pings.append((fix.ts, ins, nrs))
            ref_events = ref_visits(ref_state, ref_pings, dwell_s)
            assert [(e.type.value, e.geofence_id, e.ts) for e in events] == ref_events
            totals.update(e.type.value for e in events)
            totals.update(f"{e.type.value} {e.geofence_id.split('-')[0]}" for e in events)
            last, ref_last = result.last, expected.last

    print(dict(totals))
    # A real trace: enough visits of stores and of the trace polygons, and real glitches.
    assert totals["enter store"] >= 10 and totals["exit store"] >= 10
    assert totals["enter trace"] >= 24 and totals["exit trace"] >= 20
    assert totals["dwell"] >= 10
    assert totals["implausible_speed"] > 0


def _batch_now(raw: list[dict[str, object]]) -> datetime:
    """The server clock a few seconds after the batch's newest fix (as a live phone sends)."""
    return max(datetime.fromisoformat(str(p["ts"])) for p in raw) + timedelta(seconds=5)
