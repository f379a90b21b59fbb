"""In-memory geofence index: which geofences contain, or are near, each point of a ping batch.

Two stages, as a geofence server should: a Shapely 2 STRtree of bounding boxes (expanded by the
buffer, in degrees, conservatively) answers one bulk query for the whole batch; then exact,
vectorized tests run on the candidate pairs only:

- circles: the geodesic distance to the centre (pyproj, C loop over the pairs) against r and
  r + buffer, so a circle is right in metres at any latitude and across the antimeridian;
- polygons: GEOS `intersects_xy` (a point on the boundary is inside; GEOS predicates are
  exact for double inputs), then, for the points outside, the distance to the nearest edge in a
  local metric plane at the point (metres per degree from the ellipsoid's radii of curvature,
  N·cos φ and M). That plane is an affine image of lon/lat, so RFC 7946's straight lon/lat
  edges stay straight in it; the nearest edge point it finds is then measured geodesically,
  which leaves an error of micrometres at buffers of hundreds of metres, even at 85°.

Candidates come from a uniform grid of cells sized to the typical fence (a sorted array of
cell keys, searched for a whole batch at once, which costs a fraction of an STRtree query per
point); fences much larger than a cell go to an STRtree of their own. A circle is first
measured in the local plane at the mid-latitude, whose error is bounded (below); only pairs
within that bound of r or r + buffer are measured geodesically. A batch of a few points, the
size phones send, takes a plain-Python path through the same grid, since numpy's per-call
cost would dominate it.

Longitude wraps: a box that spills over ±180° is also indexed shifted by 360°, and the point is
moved into the geofence's frame by that shift for the polygon tests, so a point at -179.9999°
is 10 m from a polygon edge at 180°.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely.geometry import MultiPolygon, Polygon

from geopush.geo.earth import (
    WGS84,
    degree_reach_array,
    distances_m,
    metres_per_degree,
    metres_per_degree_scalar,
)
from geopush.geo.geometry import Fence

# A point this close to a circle's edge (float noise of the geodesic) counts as on it.
EDGE_TOLERANCE_M = 1e-6
# Candidate pairs × edges evaluated at once when measuring distances to polygons.
_EDGE_CHUNK = 1 << 21
_TREE_CACHE_SIZE = 8
# Polygon parts with more edges than this get a GEOS distance pre-test before the exact one.
_PRETEST_EDGES = 32
_EMPTY: frozenset[str] = frozenset()
_SHIFTS = (-360.0, 0.0, 360.0)
# Batches up to this many points take the plain-Python path.
SMALL_BATCH = 8
# A fence whose box spans more cells than this (either way) goes to the STRtree instead.
_MAX_CELLS_PER_SIDE = 8
# Grid cells are the median fence box times the first of these factors that leaves at most
# `_TARGET_CANDIDATES` items in a point's cell on average; never below 1e-4 degrees (~11 m).
_CELL_FACTORS = (1.0, 0.5, 0.25)
_TARGET_CANDIDATES = 12.0
_MIN_CELL_DEG = 1e-4
# The plane at the mid-latitude (metres per degree from the radii of curvature) against
# Karney's geodesic, for points up to 60 km apart with |mid-latitude| <= 80 degrees: relative
# error below 1.4e-4 (growing with distance squared, so about 4e-4 at 100 km). The bound used
# is 0.5 % + 1 cm; circle pairs nearer than that to r or r + buffer are measured
# geodesically, so the plane never decides a case it could get wrong.
_PLANAR_MAX_M = 100_000.0
_PLANAR_MAX_LAT = 80.0
_PLANAR_REL = 0.005
_PLANAR_ABS_M = 0.01

IntArray = NDArray[np.intp]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class _Tree:
    """The STRtree for one buffer: box i is part `part[i]` seen with lon shift `shift[i]`."""

    tree: shapely.STRtree
    part: IntArray
    shift: FloatArray


@dataclass(frozen=True)
class _Grid:
    """Candidate parts for one buffer: a grid of cells, plus an STRtree for large boxes.

    Item i is part `part[i]` seen with lon shift `shift[i]`, its box (in the point's frame)
    `box[i]`. Cell `keys[k]` holds items `item[start[k]:start[k + 1]]`. The `*_list` fields
    are the same per-item facts as Python values, for small batches.
    """

    cell: float
    rows: int
    keys: NDArray[np.int64]
    start: IntArray
    item: IntArray
    part: IntArray
    shift: FloatArray
    box: FloatArray
    part_list: list[int]
    shift_list: list[float]
    box_list: list[tuple[float, float, float, float]]
    big: _Tree | None
    big_items: tuple[int, ...]

    def key(self, lon: float, lat: float) -> int:
        return math.floor((lon + 180.0) / self.cell) * self.rows + math.floor(
            (lat + 90.0) / self.cell
        )

    def items_at(self, lon: float, lat: float) -> list[int]:
        """Items of the cell holding one point (no box check), plus the large ones."""
        found: list[int] = []
        if len(self.keys):
            k = self.key(lon, lat)
            pos = int(self.keys.searchsorted(k))
            if pos < len(self.keys) and int(self.keys[pos]) == k:
                found = self.item[self.start[pos]:self.start[pos + 1]].tolist()
        if self.big_items:
            found += self.big_items
        return found

    def candidates(self, lon: FloatArray, lat: FloatArray) -> tuple[IntArray, IntArray, FloatArray]:
        """(point, part, shift) of every pair whose box holds the point."""
        cell = self.cell
        keys = (np.floor((lon + 180.0) / cell).astype(np.int64) * self.rows
                + np.floor((lat + 90.0) / cell).astype(np.int64))
        point = np.empty(0, dtype=np.intp)
        item = np.empty(0, dtype=np.intp)
        if len(self.keys):
            pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
            found = self.keys[pos] == keys
            first = self.start[pos]
            count = np.where(found, self.start[pos + 1] - first, 0)
            total = int(count.sum())
            if total:
                point = np.repeat(np.arange(len(lon)), count)
                offset = np.cumsum(count) - count
                item = self.item[np.repeat(first - offset, count) + np.arange(total)]
                b = self.box[item]
                plon, plat = lon[point], lat[point]
                keep = (b[:, 0] <= plon) & (plon <= b[:, 2]) & (b[:, 1] <= plat) & (plat <= b[:, 3])
                point, item = point[keep], item[keep]
        part, shift = self.part[item], self.shift[item]
        if self.big is not None:
            p, box = self.big.tree.query(shapely.points(lon, lat))
            point = np.concatenate([point, p])
            part = np.concatenate([part, self.big.part[box]])
            shift = np.concatenate([shift, self.big.shift[box]])
        return point, part, shift


class GeofenceIndex:
    """An immutable index of geofences; build once per reload, query per ping batch."""

    def __init__(
        self,
        ids: list[str],
        fence_of_part: IntArray,
        circles: FloatArray,
        polygons: list[Polygon | None],
        edges: FloatArray,
        edge_start: IntArray,
        edge_count: IntArray,
    ) -> None:
        """Use `GeofenceIndex.build`; this takes the flattened arrays it prepares."""
        self._ids = ids
        self._fence_of_part = fence_of_part
        self._circles = circles  # per part: lon, lat, radius (NaN for polygon parts)
        self._polygons = polygons  # per part: the shapely polygon (None for circles)
        self._edges = edges  # rows of x1, y1, x2, y2 for every ring of every polygon part
        self._edge_start = edge_start
        self._edge_count = edge_count
        self._is_circle = ~np.isnan(circles[:, 2])
        self._circles_list: list[tuple[float, float, float]] = [
            (c[0], c[1], c[2]) for c in circles.tolist()]
        self._fence_of_list: list[int] = fence_of_part.tolist()
        self._edge_rows: dict[int, list[list[float]]] = {}  # per polygon part, on first use
        self._polygon_array = np.empty(len(polygons), dtype=object)
        self._polygon_array[:] = polygons
        # Per part: the lon/lat box, and how far beyond it the fence reaches (circles: r).
        self._bounds = np.column_stack(
            [circles[:, 0], circles[:, 1], circles[:, 0], circles[:, 1]]).reshape(-1, 4)
        if (~self._is_circle).any():
            self._bounds[~self._is_circle] = shapely.bounds(
                self._polygon_array[~self._is_circle])
        self._reach = np.where(self._is_circle, circles[:, 2], 0.0)
        self._grids: dict[float, _Grid] = {}
        # Per fence, the one-element answer (a point in one fence is the common case).
        self._single = [frozenset([gid]) for gid in ids]
        self._single_array = np.empty(len(ids), dtype=object)
        # Answers for points in several fences, by their fences (pings cluster at stores).
        self._sets: dict[tuple[int, ...], frozenset[str]] = {}
        self._single_array[:] = self._single

    @classmethod
    def build(cls, entries: Iterable[tuple[str, Fence]]) -> GeofenceIndex:
        """Index (geofence id, fence) pairs; ids must be unique.

        The polygons' edges are taken out of all of them at once (shapely's vectorized
        ring and coordinate functions), so a rebuild of 100k fences after one change costs
        array work, not a Python loop over every ring.
        """
        ids: list[str] = []
        fence_of_part: list[int] = []
        circles: list[tuple[float, float, float]] = []
        polygons: list[Polygon | None] = []
        seen: set[str] = set()
        for gid, fence in entries:
            if gid in seen:
                raise ValueError(f"duplicate geofence id {gid!r}")
            seen.add(gid)
            ids.append(gid)
            for part in _parts(fence):
                fence_of_part.append(len(ids) - 1)
                if isinstance(part, Polygon):
                    circles.append((np.nan, np.nan, np.nan))
                    polygons.append(part)
                else:
                    circles.append(part)
                    polygons.append(None)
        is_polygon = np.fromiter((p is not None for p in polygons), dtype=bool,
                                 count=len(polygons))
        shapes = np.empty(int(is_polygon.sum()), dtype=object)
        shapes[:] = [p for p in polygons if p is not None]
        shapely.prepare(shapes)
        edges, per_polygon = _edges_of_all(shapes)
        edge_count = np.zeros(len(polygons), dtype=np.intp)
        edge_count[is_polygon] = per_polygon
        # A part's edges start after those of every polygon part before it (circles: 0 rows).
        edge_start = np.concatenate(([0], np.cumsum(edge_count)[:-1])).astype(np.intp)
        return cls(
            ids,
            np.asarray(fence_of_part, dtype=np.intp),
            np.asarray(circles, dtype=np.float64).reshape(-1, 3),
            polygons,
            edges,
            edge_start,
            edge_count,
        )

    def __len__(self) -> int:
        return len(self._ids)

    def prepare(self, buffer_m: float) -> GeofenceIndex:
        """Build the candidate grid for `buffer_m` now (else the first `locate` does)."""
        self._grid(float(buffer_m))
        return self

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._ids)

    def locate(
        self, lons: NDArray[np.float64], lats: NDArray[np.float64], buffer_m: float
    ) -> tuple[list[frozenset[str]], list[frozenset[str]]]:
        """For each point: ids of the geofences containing it, and of those within `buffer_m`.

        Points on a boundary are inside. The second set includes the first. Coordinates are
        degrees, lon in [-180, 180], lat in [-90, 90].
        """
        if len(lons) <= SMALL_BATCH and self._ids:
            small = self._locate_small(lons, lats, buffer_m)
            if small is not None:
                return small
        lon = np.asarray(lons, dtype=np.float64).ravel()
        lat = np.asarray(lats, dtype=np.float64).ravel()
        _check_points(lon, lat, buffer_m)
        n = len(lon)
        if n == 0 or not self._ids:
            return [_EMPTY] * n, [_EMPTY] * n
        point, part, shift = self._grid(float(buffer_m)).candidates(lon, lat)
        inside = np.zeros(len(point), dtype=bool)
        near = np.zeros(len(point), dtype=bool)

        circle = self._is_circle[part]
        if circle.any():
            c = self._circles[part[circle]]
            inside[circle], near[circle] = _circle_tests(
                c[:, 0], c[:, 1], c[:, 2], lon[point[circle]], lat[point[circle]], buffer_m
            )

        poly = np.flatnonzero(~circle)
        if len(poly):
            pshift = shift[poly]
            geoms = self._polygon_array[part[poly]]
            inside[poly] = shapely.intersects_xy(geoms, lon[point[poly]] + pshift,
                                                 lat[point[poly]])
            near[poly] = inside[poly]
            outside = poly[~inside[poly]]
            if len(outside) and buffer_m > 0:
                out_lon = lon[point[outside]] + pshift[~inside[poly]]
                out_lat = lat[point[outside]]
                near[outside] = self._near_polygon(
                    part[outside], geoms[~inside[poly]], out_lon, out_lat, buffer_m
                )

        fence = self._fence_of_part[part]
        inside_ids = self._group(n, point[inside], fence[inside])
        if np.array_equal(inside, near):  # the common case: no point only near a fence
            return inside_ids, list(inside_ids)
        return inside_ids, self._group(n, point[near], fence[near])

    def _near_polygon(self, part: IntArray, geoms: NDArray[np.object_], lon: FloatArray,
                      lat: FloatArray, buffer_m: float) -> NDArray[np.bool_]:
        """Whether each point (outside its polygon part) is within `buffer_m` of its edge."""
        near = np.zeros(len(part), dtype=bool)
        candidate = np.arange(len(part))
        # Large polygons: a planar pre-test in degrees (conservative, GEOS's indexed
        # distance), so only points near their boundary pay for per-edge distances.
        big = np.flatnonzero(self._edge_count[part] > _PRETEST_EDGES)
        if len(big):
            dlon, dlat = degree_reach_array(lat[big], buffer_m)
            far = ~shapely.dwithin(geoms[big], shapely.points(lon[big], lat[big]),
                                   np.hypot(dlon, dlat))
            keep = np.ones(len(part), dtype=bool)
            keep[big[far]] = False
            candidate = candidate[keep]
        d = self._edge_distance(part[candidate], lon[candidate], lat[candidate])
        near[candidate] = d <= buffer_m + EDGE_TOLERANCE_M
        return near

    def _locate_small(
        self, lons: NDArray[np.float64] | list[float], lats: NDArray[np.float64] | list[float],
        buffer_m: float,
    ) -> tuple[list[frozenset[str]], list[frozenset[str]]] | None:
        """`locate` for a few points in plain Python; None when a point needs the bulk path
        (a polygon it is outside of but may be near: the edge distances are vectorized)."""
        lon_list = lons.tolist() if isinstance(lons, np.ndarray) else list(lons)
        lat_list = lats.tolist() if isinstance(lats, np.ndarray) else list(lats)
        if len(lon_list) != len(lat_list):
            raise ValueError("lons and lats must have the same length")
        if not (math.isfinite(buffer_m) and buffer_m >= 0):
            raise ValueError("buffer_m must be a finite number >= 0")
        for x, y in zip(lon_list, lat_list, strict=True):
            if not (abs(x) <= 180.0 and abs(y) <= 90.0):
                raise ValueError("lons must be in [-180, 180] and lats in [-90, 90] (finite)")
        grid = self._grid(float(buffer_m))
        if len(grid.big_items) > 64:
            return None
        inside_out: list[frozenset[str]] = []
        near_out: list[frozenset[str]] = []
        circles, polygons, fence_of = self._circles_list, self._polygons, self._fence_of_list
        for x, y in zip(lon_list, lat_list, strict=True):
            found_in: list[int] = []
            found_near: list[int] = []
            parts, shifts, boxes = grid.part_list, grid.shift_list, grid.box_list
            for i in grid.items_at(x, y):
                x0, y0, x1, y1 = boxes[i]
                if not (x0 <= x <= x1 and y0 <= y <= y1):
                    continue
                part, shift = parts[i], shifts[i]
                fence = fence_of[part]
                polygon = polygons[part]
                if polygon is None:
                    clon, clat, r = circles[part]
                    is_in, is_near = _circle_test(clon, clat, r, x, y, buffer_m)
                elif shapely.intersects_xy(polygon, x + shift, y):
                    is_in = is_near = True
                elif buffer_m > 0:
                    is_in = False
                    near_polygon = self._near_polygon_small(part, x + shift, y, buffer_m)
                    if near_polygon is None:
                        return None
                    is_near = near_polygon
                else:
                    is_in = is_near = False
                if is_in:
                    found_in.append(fence)
                if is_near:
                    found_near.append(fence)
            inside_out.append(self._ids_of(found_in))
            near_out.append(self._ids_of(found_near))
        return inside_out, near_out

    def _near_polygon_small(self, part: int, lon: float, lat: float,
                            buffer_m: float) -> bool | None:
        """`_near_polygon` for one point outside a small polygon part, in plain Python; None
        for a large polygon (the vectorized path handles it)."""
        count = int(self._edge_count[part])
        if count > _PRETEST_EDGES:
            return None
        edges = self._edge_rows.get(part)
        if edges is None:
            start = int(self._edge_start[part])
            edges = self._edge_rows[part] = self._edges[start:start + count].tolist()
        kx, ky = metres_per_degree_scalar(lat)
        best, best_point = math.inf, (lon, lat)
        for x1, y1, x2, y2 in edges:
            ax, ay = (x1 - lon) * kx, (y1 - lat) * ky
            ex, ey = (x2 - x1) * kx, (y2 - y1) * ky
            length2 = ex * ex + ey * ey
            t = 0.0 if length2 <= 0 else min(1.0, max(0.0, -(ax * ex + ay * ey) / length2))
            cx, cy = ax + t * ex, ay + t * ey
            d2 = cx * cx + cy * cy
            if d2 < best:
                best, best_point = d2, (x1 + t * (x2 - x1), y1 + t * (y2 - y1))
        d = math.sqrt(best)
        margin = _PLANAR_REL * d + _PLANAR_ABS_M
        if abs(d - buffer_m) <= margin or abs(lat) > _PLANAR_MAX_LAT or d > _PLANAR_MAX_M:
            d = float(WGS84.inv(lon, lat, best_point[0], best_point[1])[2])
        return d <= buffer_m + EDGE_TOLERANCE_M

    def _ids_of(self, fences: list[int]) -> frozenset[str]:
        if not fences:
            return _EMPTY
        if len(fences) == 1:
            return self._single[fences[0]]
        return frozenset([self._ids[f] for f in fences])

    # --- internals -------------------------------------------------------------------------

    def _grid(self, buffer_m: float) -> _Grid:
        """The candidate grid for this buffer (built on first use; ingest uses one buffer)."""
        cached = self._grids.get(buffer_m)
        if cached is not None:
            return cached
        minx, miny, maxx, maxy = self._part_boxes(buffer_m)
        boxes, parts, shifts = [], [], []
        for shift in _SHIFTS:
            # A point at lon w is a candidate in this frame when minx <= w + shift <= maxx.
            lo, hi = minx - shift, maxx - shift
            hit = np.flatnonzero((hi >= -180.0) & (lo <= 180.0))
            boxes.append(np.column_stack([lo[hit], miny[hit], hi[hit], maxy[hit]]))
            parts.append(hit)
            shifts.append(np.full(len(hit), shift))
        box = np.concatenate(boxes).reshape(-1, 4)
        part = np.concatenate(parts).astype(np.intp)
        shift_of = np.concatenate(shifts)
        # Cells about the size of the typical fence box, smaller where fences are dense,
        # so a point's cell holds a few candidates.
        extent = np.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1])
        median = float(np.median(extent)) if len(box) else 1.0
        cell, layout = 0.0, None
        for factor in _CELL_FACTORS:
            finer = max(median * factor, _MIN_CELL_DEG)
            candidate = _layout(box, finer)
            if layout is not None and len(candidate[4]) > max(64, len(layout[4])):
                break  # finer cells would send more fences to the STRtree
            cell, layout = finer, candidate
            if candidate[-1] <= _TARGET_CANDIDATES:
                break
        assert layout is not None
        rows, keys, start, item, big, _ = layout
        big_tree = None
        if len(big):
            b = box[big]
            big_tree = _Tree(
                tree=shapely.STRtree(shapely.box(b[:, 0], b[:, 1], b[:, 2], b[:, 3])),
                part=part[big], shift=shift_of[big],
            )
        grid = _Grid(
            cell=cell, rows=rows, keys=keys, start=start, item=item, part=part,
            shift=shift_of, box=box, part_list=part.tolist(), shift_list=shift_of.tolist(),
            box_list=[(b[0], b[1], b[2], b[3]) for b in box.tolist()], big=big_tree,
            big_items=tuple(big.tolist()),
        )
        if len(self._grids) >= _TREE_CACHE_SIZE:
            self._grids.clear()
        self._grids[buffer_m] = grid
        return grid

    def _part_boxes(self, buffer_m: float) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Each part's lon/lat box grown by the buffer (circles: by radius + buffer)."""
        minx, miny, maxx, maxy = self._bounds.T
        abs_lat = np.maximum(np.abs(miny), np.abs(maxy))
        dlon, dlat = degree_reach_array(abs_lat, self._reach + buffer_m)
        pole = dlon >= 180.0  # the reach touches a pole: every longitude
        minx = np.where(pole, -180.0, minx - dlon)
        maxx = np.where(pole, 180.0, maxx + dlon)
        return minx, np.maximum(miny - dlat, -90.0), maxx, np.minimum(maxy + dlat, 90.0)

    def _edge_distance(self, part: IntArray, lon: FloatArray, lat: FloatArray) -> FloatArray:
        """Metres from each point to the nearest edge of its polygon part, all pairs at once."""
        count = self._edge_count[part]
        out = np.empty(len(part), dtype=np.float64)
        if len(part) == 0:
            return out
        # Chunks of pairs bound the memory of the pairs × edges arrays.
        ends = np.cumsum(count)
        lo = 0
        while lo < len(part):
            base = ends[lo] - count[lo]
            hi = int(np.searchsorted(ends, base + _EDGE_CHUNK, side="right"))
            hi = max(hi, lo + 1)
            out[lo:hi] = self._edge_distance_chunk(part[lo:hi], lon[lo:hi], lat[lo:hi])
            lo = hi
        return out

    def _edge_distance_chunk(self, part: IntArray, lon: FloatArray, lat: FloatArray) -> FloatArray:
        count = self._edge_count[part]
        first = np.cumsum(count) - count
        pair = np.repeat(np.arange(len(part)), count)
        edge = np.repeat(self._edge_start[part] - first, count) + np.arange(count.sum())
        x1, y1, x2, y2 = self._edges[edge].T
        kx, ky = metres_per_degree(lat)
        kx, ky, px, py = kx[pair], ky[pair], lon[pair], lat[pair]
        # Edge ends in metres in the local plane centred on the point.
        ax, ay = (x1 - px) * kx, (y1 - py) * ky
        bx, by = (x2 - px) * kx, (y2 - py) * ky
        ex, ey = bx - ax, by - ay
        length2 = ex * ex + ey * ey
        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.where(length2 > 0, -(ax * ex + ay * ey) / length2, 0.0)
        t = np.clip(t, 0.0, 1.0)
        cx, cy = ax + t * ex, ay + t * ey
        d2 = cx * cx + cy * cy
        # The nearest edge point found in the plane, measured again geodesically: the
        # distance is stationary there, so the plane's small error becomes second order.
        nearest = first + _first_true(d2 == np.minimum.reduceat(d2, first)[pair], pair, first)
        tn = t[nearest]
        lon_c = x1[nearest] + tn * (x2[nearest] - x1[nearest])
        lat_c = y1[nearest] + tn * (y2[nearest] - y1[nearest])
        return distances_m(lon, lat, lon_c, lat_c)

    def _group(self, n: int, point: IntArray, fence: IntArray) -> list[frozenset[str]]:
        """Per point, the frozenset of geofence ids of its pairs (duplicates collapse)."""
        if len(point) == 0:
            return [_EMPTY] * n
        if len(point) > 1 and np.any(point[1:] < point[:-1]):
            order = np.argsort(point, kind="stable")
            point, fence = point[order], fence[order]
        first = np.r_[True, point[1:] != point[:-1]]
        starts = np.flatnonzero(first)
        count = np.diff(np.r_[starts, len(point)])
        # Most points hit one fence: their answers are gathered by numpy, the rest in Python.
        result = np.full(n, _EMPTY, dtype=object)
        one = count == 1
        result[point[starts[one]]] = self._single_array[fence[starts[one]]]
        if not one.all():
            ids, sets = self._ids, self._sets
            fences = fence.tolist()
            for p, s, c in zip(point[starts[~one]].tolist(), starts[~one].tolist(),
                               count[~one].tolist(), strict=True):
                key = tuple(fences[s:s + c])
                found = sets.get(key)
                if found is None:
                    if len(sets) > 10_000:
                        sets.clear()
                    found = sets[key] = frozenset([ids[f] for f in key])
                result[p] = found
        out: list[frozenset[str]] = result.tolist()
        return out


def _layout(box: FloatArray, cell: float) -> tuple[
        int, NDArray[np.int64], IntArray, IntArray, IntArray, float]:
    """Boxes laid on a grid of `cell` degrees: (rows, sorted cell keys, CSR starts, items
    per cell, boxes too large for the grid, mean items in the cell of a fence's point)."""
    rows = math.floor(180.0 / cell) + 2
    x0 = np.floor((np.maximum(box[:, 0], -180.0) + 180.0) / cell).astype(np.int64)
    x1 = np.floor((np.minimum(box[:, 2], 180.0) + 180.0) / cell).astype(np.int64)
    y0 = np.floor((box[:, 1] + 90.0) / cell).astype(np.int64)
    y1 = np.floor((box[:, 3] + 90.0) / cell).astype(np.int64)
    nx, ny = x1 - x0 + 1, y1 - y0 + 1
    small = (nx <= _MAX_CELLS_PER_SIDE) & (ny <= _MAX_CELLS_PER_SIDE)
    big = np.flatnonzero(~small)
    gridded = np.flatnonzero(small)
    count = (nx * ny)[gridded]
    item = np.repeat(gridded, count)
    local = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    key = (x0[item] + local // ny[item]) * rows + (y0[item] + local % ny[item])
    order = np.argsort(key, kind="stable")
    key, item = key[order], item[order]
    keys, first, per_cell = np.unique(key, return_index=True, return_counts=True)
    start = np.append(first, len(key)).astype(np.intp)
    # A point in fence f's cell meets that cell's items: weight cells by their own count.
    crowding = float((per_cell ** 2).sum() / max(per_cell.sum(), 1))
    return rows, keys, start, item.astype(np.intp), big, crowding


def _circle_tests(
    clon: FloatArray, clat: FloatArray, r: FloatArray, lon: FloatArray, lat: FloatArray,
    buffer_m: float,
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """(inside, within buffer) for point/circle pairs: in the plane where it is sure, else
    geodesically."""
    dlon = (lon - clon + 180.0) % 360.0 - 180.0
    mid = 0.5 * (lat + clat)
    kx, ky = metres_per_degree(mid)
    d = np.hypot(dlon * kx, (lat - clat) * ky)
    margin = _PLANAR_REL * d + _PLANAR_ABS_M
    unsure = ((np.abs(mid) > _PLANAR_MAX_LAT) | (d > _PLANAR_MAX_M)
              | (np.abs(d - r) <= margin) | (np.abs(d - r - buffer_m) <= margin))
    if unsure.any():
        d[unsure] = distances_m(clon[unsure], clat[unsure], lon[unsure], lat[unsure])
    return d <= r + EDGE_TOLERANCE_M, d <= r + buffer_m + EDGE_TOLERANCE_M


def _circle_test(
    clon: float, clat: float, r: float, lon: float, lat: float, buffer_m: float
) -> tuple[bool, bool]:
    """`_circle_tests` for one pair, in plain Python."""
    dlon = (lon - clon + 180.0) % 360.0 - 180.0
    mid = 0.5 * (lat + clat)
    kx, ky = metres_per_degree_scalar(mid)
    d = math.hypot(dlon * kx, (lat - clat) * ky)
    margin = _PLANAR_REL * d + _PLANAR_ABS_M
    if (abs(mid) > _PLANAR_MAX_LAT or d > _PLANAR_MAX_M or abs(d - r) <= margin
            or abs(d - r - buffer_m) <= margin):
        d = float(WGS84.inv(clon, clat, lon, lat)[2])
    return d <= r + EDGE_TOLERANCE_M, d <= r + buffer_m + EDGE_TOLERANCE_M


def _parts(fence: Fence) -> list[Polygon | tuple[float, float, float]]:
    """Polygon parts are indexed one by one, so a MultiPolygon's box is not the whole world."""
    if fence.kind == "circle":
        assert fence.center_lon is not None and fence.center_lat is not None
        assert fence.radius_m is not None
        return [(fence.center_lon, fence.center_lat, fence.radius_m)]
    geometry = fence.geometry
    if isinstance(geometry, MultiPolygon):
        return list(geometry.geoms)
    assert isinstance(geometry, Polygon)
    return [geometry]


def _first_true(mask: NDArray[np.bool_], group: IntArray, first: IntArray) -> IntArray:
    """Offset, within each group of consecutive rows, of its first row where `mask` holds."""
    rows = np.flatnonzero(mask)
    groups, at = np.unique(group[rows], return_index=True)
    offset = np.zeros(len(first), dtype=np.intp)
    offset[groups] = rows[at] - first[groups]
    return offset


def _edges_of_all(polygons: NDArray[np.object_]) -> tuple[FloatArray, IntArray]:
    """`_edges_of` for every polygon at once, in order, and how many rows each has."""
    if len(polygons) == 0:
        return np.empty((0, 4)), np.empty(0, dtype=np.intp)
    rings, ring_polygon = shapely.get_rings(polygons, return_index=True)
    coords, coord_ring = shapely.get_coordinates(rings, return_index=True)
    # An edge joins two consecutive coordinates of one ring.
    first = np.flatnonzero(coord_ring[:-1] == coord_ring[1:])
    edges = np.hstack([coords[first], coords[first + 1]])
    per_polygon = np.bincount(ring_polygon[coord_ring[first]], minlength=len(polygons))
    return edges, per_polygon.astype(np.intp)


def _check_points(lon: FloatArray, lat: FloatArray, buffer_m: float) -> None:
    if lon.shape != lat.shape:
        raise ValueError("lons and lats must have the same length")
    if not (np.isfinite(buffer_m) and buffer_m >= 0):
        raise ValueError("buffer_m must be a finite number >= 0")
    if not (np.all(np.abs(lon) <= 180.0) and np.all(np.abs(lat) <= 90.0)):
        raise ValueError("lons must be in [-180, 180] and lats in [-90, 90] (finite)")
