"""The layered index (a base, an overlay of changed fences, hidden base copies) answers
exactly as one index built over the current fences, whatever the changes."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from geopush.geo.geometry import Fence, parse_geometry
from geopush.geo.index import GeofenceIndex
from geopush.geo.layered_index import LayeredIndex

LAT, LON = 39.9, 116.4
BUFFER_M = 20.0


def _fence(kind: int, dlat: float, dlon: float, size: float) -> Fence:
    lat, lon = LAT + dlat, LON + dlon
    if kind == 0:
        return parse_geometry({"type": "Circle", "center": [lon, lat], "radius_m": size})
    r = size / 111_000
    ring = [[lon + r * math.cos(a * math.pi / 3), lat + r * math.sin(a * math.pi / 3)]
            for a in range(6)]
    return parse_geometry({"type": "Polygon", "coordinates": [[*ring, ring[0]]]})


fences = st.builds(_fence, st.integers(0, 1), st.floats(-0.002, 0.002),
                   st.floats(-0.002, 0.002), st.floats(20, 150))


@settings(max_examples=60, deadline=None)
@given(
    base=st.dictionaries(st.sampled_from([f"g{i}" for i in range(12)]), fences, max_size=12),
    changes=st.lists(st.tuples(st.sampled_from([f"g{i}" for i in range(16)]),
                               st.one_of(st.none(), fences)), max_size=10),
    points=st.lists(st.tuples(st.floats(-0.003, 0.003), st.floats(-0.003, 0.003)),
                    min_size=1, max_size=40),
)
def test_same_answers_as_one_index_over_the_current_fences(
    base: dict[str, Fence], changes: list[tuple[str, Fence | None]],
    points: list[tuple[float, float]],
) -> None:
    layered = LayeredIndex.build(sorted(base.items()))
    current = dict(base)
    changed: set[str] = set()
    for gid, fence in changes:  # None: deleted; else created or moved
        changed.add(gid)
        if fence is None:
            current.pop(gid, None)
        else:
            current[gid] = fence
    layered = layered.with_changes(
        [(gid, current[gid]) for gid in sorted(changed) if gid in current], changed)
    whole = GeofenceIndex.build(sorted(current.items()))
    lats = np.array([LAT + p[0] for p in points])
    lons = np.array([LON + p[1] for p in points])
    assert sorted(layered.ids) == sorted(current)
    # Both paths of the index: a handful of points (plain Python) and many (vectorized).
    for n in (min(len(points), 3), len(points)):
        assert layered.locate(lons[:n], lats[:n], BUFFER_M) == whole.locate(
            lons[:n], lats[:n], BUFFER_M)
