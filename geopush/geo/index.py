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

Longitude wraps: a box that spills over ±180° is also indexed shifted by 360°, and the point is
moved into the geofence's frame by that shift for the polygon tests, so a point at -179.9999°
is 10 m from a polygon edge at 180°.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import shapely
from numpy.typing import NDArray
from shapely.geometry import MultiPolygon, Polygon

from geopush.geo.earth import degree_reach_array, distances_m, metres_per_degree
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

IntArray = NDArray[np.intp]
FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class _Tree:
    """The STRtree for one buffer: box i is part `part[i]` seen with lon shift `shift[i]`."""

    tree: shapely.STRtree
    part: IntArray
    shift: FloatArray


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
        # Per part: the lon/lat box, and how far beyond it the fence reaches (circles: r).
        self._bounds = np.array(
            [
                (c[0], c[1], c[0], c[1]) if p is None else p.bounds
                for c, p in zip(circles.tolist(), polygons, strict=True)
            ],
            dtype=np.float64,
        ).reshape(-1, 4)
        self._reach = np.where(self._is_circle, circles[:, 2], 0.0)
        self._trees: dict[float, _Tree] = {}

    @classmethod
    def build(cls, entries: Iterable[tuple[str, Fence]]) -> GeofenceIndex:
        """Index (geofence id, fence) pairs; ids must be unique."""
        ids: list[str] = []
        fence_of_part: list[int] = []
        circles: list[tuple[float, float, float]] = []
        polygons: list[Polygon | None] = []
        edges: list[FloatArray] = []
        edge_start: list[int] = []
        edge_count: list[int] = []
        n_edges = 0
        seen: set[str] = set()
        for gid, fence in entries:
            if gid in seen:
                raise ValueError(f"duplicate geofence id {gid!r}")
            seen.add(gid)
            ids.append(gid)
            for part in _parts(fence):
                fence_of_part.append(len(ids) - 1)
                if isinstance(part, Polygon):
                    shapely.prepare(part)
                    part_edges = _edges_of(part)
                    circles.append((np.nan, np.nan, np.nan))
                    polygons.append(part)
                    edges.append(part_edges)
                    edge_start.append(n_edges)
                    edge_count.append(len(part_edges))
                    n_edges += len(part_edges)
                else:
                    circles.append(part)
                    polygons.append(None)
                    edge_start.append(n_edges)
                    edge_count.append(0)
        return cls(
            ids,
            np.asarray(fence_of_part, dtype=np.intp),
            np.asarray(circles, dtype=np.float64).reshape(-1, 3),
            polygons,
            np.concatenate(edges) if edges else np.empty((0, 4)),
            np.asarray(edge_start, dtype=np.intp),
            np.asarray(edge_count, dtype=np.intp),
        )

    def __len__(self) -> int:
        return len(self._ids)

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
        lon = np.asarray(lons, dtype=np.float64).ravel()
        lat = np.asarray(lats, dtype=np.float64).ravel()
        _check_points(lon, lat, buffer_m)
        n = len(lon)
        if n == 0 or not self._ids:
            return [_EMPTY] * n, [_EMPTY] * n
        index = self._tree(float(buffer_m))
        point, box = index.tree.query(shapely.points(lon, lat))
        part = index.part[box]
        inside = np.zeros(len(point), dtype=bool)
        near = np.zeros(len(point), dtype=bool)

        circle = self._is_circle[part]
        if circle.any():
            c = self._circles[part[circle]]
            d = distances_m(c[:, 0], c[:, 1], lon[point[circle]], lat[point[circle]])
            inside[circle] = d <= c[:, 2] + EDGE_TOLERANCE_M
            near[circle] = d <= c[:, 2] + buffer_m + EDGE_TOLERANCE_M

        poly = np.flatnonzero(~circle)
        if len(poly):
            shift = index.shift[box[poly]]
            geoms = np.array([self._polygons[i] for i in part[poly].tolist()], dtype=object)
            inside[poly] = shapely.intersects_xy(geoms, lon[point[poly]] + shift, lat[point[poly]])
            near[poly] = inside[poly]
            outside = poly[~inside[poly]]
            if len(outside) and buffer_m > 0:
                out_lon = lon[point[outside]] + shift[~inside[poly]]
                out_lat = lat[point[outside]]
                # Large polygons: a planar pre-test in degrees (conservative, GEOS's indexed
                # distance), so only points near their boundary pay for per-edge distances.
                big = np.flatnonzero(self._edge_count[part[outside]] > _PRETEST_EDGES)
                if len(big):
                    dlon, dlat = degree_reach_array(out_lat[big], buffer_m)
                    far = ~shapely.dwithin(
                        geoms[~inside[poly]][big],
                        shapely.points(out_lon[big], out_lat[big]),
                        np.hypot(dlon, dlat),
                    )
                    keep = np.ones(len(outside), dtype=bool)
                    keep[big[far]] = False
                    outside, out_lon, out_lat = outside[keep], out_lon[keep], out_lat[keep]
                d = self._edge_distance(part[outside], out_lon, out_lat)
                near[outside] = d <= buffer_m + EDGE_TOLERANCE_M

        fence = self._fence_of_part[part]
        inside_ids = self._group(n, point[inside], fence[inside])
        return inside_ids, self._group(n, point[near], fence[near])

    # --- internals -------------------------------------------------------------------------

    def _tree(self, buffer_m: float) -> _Tree:
        """The box tree for this buffer (built on first use; ingest uses one buffer)."""
        cached = self._trees.get(buffer_m)
        if cached is not None:
            return cached
        minx, miny, maxx, maxy = self._part_boxes(buffer_m)
        boxes, parts, shifts = [], [], []
        for shift in _SHIFTS:
            # A point at lon w is a candidate in this frame when minx <= w + shift <= maxx.
            lo, hi = minx - shift, maxx - shift
            hit = np.flatnonzero((hi >= -180.0) & (lo <= 180.0))
            boxes.append(shapely.box(lo[hit], miny[hit], hi[hit], maxy[hit]))
            parts.append(hit)
            shifts.append(np.full(len(hit), shift))
        tree = _Tree(
            tree=shapely.STRtree(np.concatenate(boxes)),
            part=np.concatenate(parts).astype(np.intp),
            shift=np.concatenate(shifts),
        )
        if len(self._trees) >= _TREE_CACHE_SIZE:
            self._trees.clear()
        self._trees[buffer_m] = tree
        return tree

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
        result: list[frozenset[str]] = [_EMPTY] * n
        if len(point) == 0:
            return result
        order = np.argsort(point, kind="stable")
        point, fence = point[order], fence[order]
        starts = np.flatnonzero(np.r_[True, point[1:] != point[:-1]])
        ends = np.r_[starts[1:], len(point)]
        ids = self._ids
        fences = fence.tolist()
        for p, s, e in zip(point[starts].tolist(), starts.tolist(), ends.tolist(), strict=True):
            result[p] = frozenset([ids[f] for f in fences[s:e]])
        return result


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


def _edges_of(polygon: Polygon) -> FloatArray:
    """Rows x1, y1, x2, y2 of every edge of every ring (holes too: a hole's edge is a border)."""
    rows = []
    for ring in (polygon.exterior, *polygon.interiors):
        xy = np.asarray(ring.coords, dtype=np.float64)[:, :2]
        rows.append(np.hstack([xy[:-1], xy[1:]]))
    return np.concatenate(rows)


def _check_points(lon: FloatArray, lat: FloatArray, buffer_m: float) -> None:
    if lon.shape != lat.shape:
        raise ValueError("lons and lats must have the same length")
    if not (np.isfinite(buffer_m) and buffer_m >= 0):
        raise ValueError("buffer_m must be a finite number >= 0")
    if not (np.all(np.abs(lon) <= 180.0) and np.all(np.abs(lat) <= 90.0)):
        raise ValueError("lons must be in [-180, 180] and lats in [-90, 90] (finite)")
