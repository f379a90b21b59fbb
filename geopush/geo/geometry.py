"""Geofence geometry: parse and validate GeoJSON polygons and circles, measure their area.

Pure: values in, values out. Every refusal is a `GeometryError` whose `reason` is a stable
machine code (the API answers 422 with it) and whose `message` says exactly what is wrong and
where, so a marketer can fix the shape without guessing.

Conventions (SPEC section 3, RFC 7946): positions are `[lon, lat]` (an optional third
element, the altitude, is ignored); polygon edges are straight lines in lon/lat; a circle is
`{"type": "Circle", "center": [lon, lat], "radius_m": r}` measured geodesically on WGS84.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

import numpy as np
import shapely
from shapely.geometry import LinearRing, MultiPolygon, Polygon

from geopush.errors import Unprocessable
from geopush.geo.earth import geodesic_disc_area_m2, lonlat_ring_area_m2

MAX_VERTICES = 2_000
MIN_RADIUS_M = 10.0
MAX_RADIUS_M = 50_000.0

# Candidate pairs of MultiPolygon parts examined to name the two that overlap; beyond it
# the answer names the place GEOS found instead (bounded work for any input).
_MAX_PART_PAIRS = 2_000

FenceKind = Literal["polygon", "circle"]
GeometryReason = Literal[
    "malformed",
    "unsupported_type",
    "too_few_points",
    "unclosed_ring",
    "self_intersection",
    "too_many_vertices",
    "radius_out_of_bounds",
    "coordinates_out_of_range",
    "crosses_antimeridian",
]


class GeometryError(Unprocessable, ValueError):
    """A geofence geometry that geopush refuses (422 `invalid_geometry`); `reason` is the
    machine code of why, in the error's details beside the `geometry` field."""

    def __init__(self, reason: GeometryReason, message: str) -> None:
        super().__init__(message, code="invalid_geometry",
                         details=[{"field": "geometry", "reason": reason, "message": message}])
        self.reason: str = reason

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


@dataclass(frozen=True)
class Fence:
    """A validated geofence.

    Polygons keep their shapely geometry in lon/lat (a `Polygon` or `MultiPolygon`); circles
    keep their centre and radius, because a circle in metres is not a fixed shape in lon/lat
    (it is tested geodesically by the index, so it stays right at any latitude and across the
    antimeridian).
    """

    kind: FenceKind
    geometry: Polygon | MultiPolygon | None = None
    center_lon: float | None = None
    center_lat: float | None = None
    radius_m: float | None = None

    @property
    def vertex_count(self) -> int:
        """Vertices as counted against `MAX_VERTICES` (closing positions excluded)."""
        if self.geometry is None:
            return 0
        return sum(len(ring.coords) - 1 for ring in _rings(self.geometry))

    def to_geojson(self) -> dict[str, Any]:
        """The canonical GeoJSON-like form (what the API can echo back)."""
        if self.kind == "circle":
            return {
                "type": "Circle",
                "center": [self.center_lon, self.center_lat],
                "radius_m": self.radius_m,
            }
        assert self.geometry is not None
        return dict(shapely.geometry.mapping(self.geometry))


def circle(lon: float, lat: float, radius_m: float) -> Fence:
    """A validated circle fence (e.g. from a GeoJSON Point feature with `radius_m`)."""
    return parse_geometry({"type": "Circle", "center": [lon, lat], "radius_m": radius_m})


def parse_geometry(obj: object) -> Fence:
    """Validate a JSON-decoded geometry and return its `Fence`, or raise `GeometryError`.

    Checks run in this order, so the reason is stable: `malformed` (not an object, no string
    `type`), `unsupported_type`, `malformed` (structure, non-numbers, booleans),
    `too_many_vertices`, `coordinates_out_of_range` (also NaN/infinity), `too_few_points`,
    `unclosed_ring`, `crosses_antimeridian`, `self_intersection` (any other GEOS invalidity:
    self-crossing ring, hole outside its shell, overlapping parts...). Circles: `malformed`,
    `coordinates_out_of_range`, `radius_out_of_bounds`.
    """
    if not isinstance(obj, dict):
        raise GeometryError("malformed", f"a geometry must be a JSON object, not {_kind(obj)}")
    gtype = obj.get("type")
    if not isinstance(gtype, str):
        raise GeometryError("malformed", "a geometry needs a string member 'type'")
    if gtype == "Circle":
        return _parse_circle(obj)
    if gtype == "Polygon":
        rings = _rings_of(obj.get("coordinates"), "coordinates")
        return _polygon_fence([rings], multi=False)
    if gtype == "MultiPolygon":
        coords = obj.get("coordinates")
        if not _is_array(coords):
            raise GeometryError("malformed", "'coordinates' must be an array of polygons")
        polygons = [_rings_of(p, f"coordinates[{i}]") for i, p in enumerate(coords)]
        return _polygon_fence(polygons, multi=True)
    raise GeometryError(
        "unsupported_type",
        f"geometry type {gtype!r} is not supported: use Polygon, MultiPolygon or Circle",
    )


def area_m2(fence: Fence) -> float:
    """Area on WGS84, in square metres, of the shape the index matches.

    A polygon's edges are straight in lon/lat (SPEC section 3), so that is the shape
    measured, exactly and in work proportional to its vertices (see
    `earth.lonlat_ring_area_m2`); for fences of store size it equals the area with geodesic
    edges to better than 1e-5. A circle is geodesic by definition: see
    `earth.geodesic_disc_area_m2` (constant work too).
    """
    if fence.kind == "circle":
        assert fence.center_lat is not None and fence.radius_m is not None
        return geodesic_disc_area_m2(fence.center_lat, fence.radius_m)
    assert fence.geometry is not None
    total = 0.0
    for part in getattr(fence.geometry, "geoms", [fence.geometry]):
        total += _ring_area(part.exterior)
        total -= sum(_ring_area(hole) for hole in part.interiors)
    return total


# --- circles -------------------------------------------------------------------------------


def _parse_circle(obj: dict[str, Any]) -> Fence:
    center = obj.get("center")
    if not _is_array(center) or len(center) not in (2, 3) or not all(map(_is_number, center)):
        raise GeometryError("malformed", "a Circle needs 'center': [lon, lat] (two numbers)")
    radius = obj.get("radius_m")
    if not _is_number(radius):
        raise GeometryError("malformed", "a Circle needs a number 'radius_m' (metres)")
    lon, lat = _coordinate(center[0]), _coordinate(center[1])
    _check_lon_lat(lon, lat, "center")
    r = _coordinate(radius)
    if not (MIN_RADIUS_M <= r <= MAX_RADIUS_M):  # also refuses NaN
        raise GeometryError(
            "radius_out_of_bounds",
            f"radius_m {radius!r} must be between {MIN_RADIUS_M:g} and {MAX_RADIUS_M:g} metres",
        )
    return Fence(kind="circle", center_lon=lon, center_lat=lat, radius_m=r)


# --- polygons ------------------------------------------------------------------------------

Ring = list[tuple[float, float]]


def _rings_of(value: object, where: str) -> list[Sequence[Sequence[Any]]]:
    """Check the nesting and number types of one polygon's coordinates (not their values)."""
    if not _is_array(value):
        raise GeometryError("malformed", f"'{where}' must be an array of linear rings")
    for r, ring in enumerate(value):
        if not _is_array(ring):
            raise GeometryError("malformed", f"'{where}[{r}]' must be an array of positions")
        for p, pos in enumerate(ring):
            if not _is_array(pos) or len(pos) not in (2, 3) or not all(map(_is_number, pos)):
                raise GeometryError(
                    "malformed",
                    f"'{where}[{r}][{p}]' must be a position [lon, lat] of numbers, "
                    f"not {_short(pos)}",
                )
    return list(value)


def _polygon_fence(polygons: list[list[Sequence[Sequence[Any]]]], *, multi: bool) -> Fence:
    vertices = sum(max(len(ring) - 1, 0) for rings in polygons for ring in rings)
    if vertices > MAX_VERTICES:
        raise GeometryError(
            "too_many_vertices",
            f"the geometry has {vertices} vertices; at most {MAX_VERTICES} are allowed",
        )
    parsed = [
        [_ring_values(ring, _ring_name(pi, ri, multi)) for ri, ring in enumerate(rings)]
        for pi, rings in enumerate(polygons)
    ]
    if not parsed:
        raise GeometryError("too_few_points", "a MultiPolygon needs at least one polygon")
    for pi, rings in enumerate(parsed):
        if not rings:
            where = f"polygon {pi}" if multi else "the polygon"
            raise GeometryError("too_few_points", f"{where} has no ring (an exterior is needed)")
        for ri, ring in enumerate(rings):
            _check_ring_size(ring, _ring_name(pi, ri, multi))
    for pi, rings in enumerate(parsed):
        for ri, ring in enumerate(rings):
            if ring[0] != ring[-1]:
                raise GeometryError(
                    "unclosed_ring",
                    f"{_ring_name(pi, ri, multi)} is not closed: its first position "
                    f"{list(ring[0])} differs from its last {list(ring[-1])}",
                )
    for pi, rings in enumerate(parsed):
        for ri, ring in enumerate(rings):
            _check_antimeridian(ring, _ring_name(pi, ri, multi))
    shapes = [Polygon(rings[0], rings[1:]) for rings in parsed]
    for pi, rings in enumerate(parsed):
        for ri, ring in enumerate(rings):
            _check_simple_ring(ring, _ring_name(pi, ri, multi))
    geometry: Polygon | MultiPolygon = MultiPolygon(shapes) if multi else shapes[0]
    reason = shapely.is_valid_reason(geometry)  # GEOS: O(n log n) in the vertices
    if reason != "Valid Geometry":
        if multi:
            _check_disjoint_parts(shapes)
        raise GeometryError("self_intersection", f"the geometry is not valid: {_where(reason)}")
    return Fence(kind="polygon", geometry=geometry)


def _ring_values(ring: Sequence[Sequence[Any]], name: str) -> Ring:
    values: Ring = []
    for p, pos in enumerate(ring):
        lon, lat = _coordinate(pos[0]), _coordinate(pos[1])
        _check_lon_lat(lon, lat, f"{name}, position {p}")
        values.append((lon, lat))
    return values


def _check_ring_size(ring: Ring, name: str) -> None:
    if len(ring) < 4:
        raise GeometryError(
            "too_few_points",
            f"{name} has {len(ring)} positions; a linear ring needs at least 4 "
            "(3 distinct points and the first repeated at the end)",
        )
    if len(set(ring)) < 3:
        raise GeometryError(
            "too_few_points", f"{name} has fewer than 3 distinct positions (it has no area)"
        )


def _check_antimeridian(ring: Ring, name: str) -> None:
    for i in range(len(ring) - 1):
        (lon1, _), (lon2, _) = ring[i], ring[i + 1]
        if abs(lon2 - lon1) > 180.0:
            raise GeometryError(
                "crosses_antimeridian",
                f"{name}: the edge from position {i} (lon {lon1:g}) to {i + 1} (lon {lon2:g}) "
                "spans more than 180° of longitude; split the shape at the antimeridian "
                "into a MultiPolygon",
            )


def _check_simple_ring(ring: Ring, name: str) -> None:
    """Name the ring that crosses itself (GEOS alone only gives a location)."""
    if not LinearRing(ring).is_simple or Polygon(ring).area == 0.0:
        reason = shapely.is_valid_reason(Polygon(ring))
        detail = _where(reason) if reason != "Valid Geometry" else "it has no area"
        raise GeometryError("self_intersection", f"{name} intersects itself: {detail}")


def _check_disjoint_parts(shapes: list[Polygon]) -> None:
    """Name the two parts of an invalid MultiPolygon that overlap, if they are found soon.

    Only called once GEOS has found the whole invalid, and it looks at no more than
    `_MAX_PART_PAIRS` candidate pairs: hundreds of slivers fanned around one shared vertex
    all touch each other, and testing every pair would take seconds.
    """
    left, right = shapely.STRtree(shapes).query(shapes, predicate="intersects")
    pairs = [(i, j) for i, j in zip(left.tolist(), right.tolist(), strict=True) if i < j]
    for i, j in pairs[:_MAX_PART_PAIRS]:
        if shapes[i].intersection(shapes[j]).area > 0.0:
            raise GeometryError(
                "self_intersection",
                f"polygons {i} and {j} of the MultiPolygon overlap; merge them into one",
            )


_GEOS_REASON = re.compile(r"^(?P<what>[^\[]+)\[(?P<x>\S+) (?P<y>\S+)\]$")


def _where(reason: str) -> str:
    """Turn GEOS's 'Self-intersection[1 2]' into 'self-intersection at lon 1, lat 2'."""
    match = _GEOS_REASON.match(reason)
    if match is None:
        return reason
    return f"{match['what'].strip().lower()} at lon {match['x']}, lat {match['y']}"


def _ring_name(polygon: int, ring: int, multi: bool) -> str:
    role = "exterior ring" if ring == 0 else f"hole {ring}"
    return f"polygon {polygon}, {role} (ring {ring})" if multi else f"{role} (ring {ring})"


def _rings(geometry: Polygon | MultiPolygon) -> list[LinearRing]:
    parts = geometry.geoms if isinstance(geometry, MultiPolygon) else [geometry]
    return [ring for part in parts for ring in (part.exterior, *part.interiors)]


def _ring_area(ring: LinearRing) -> float:
    coords = np.asarray(ring.coords)
    return lonlat_ring_area_m2(coords[:, 0], coords[:, 1])


# --- values --------------------------------------------------------------------------------


def _check_lon_lat(lon: float, lat: float, where: str) -> None:
    if not (-180.0 <= lon <= 180.0):  # also refuses NaN
        raise GeometryError(
            "coordinates_out_of_range",
            f"{where}: longitude {lon!r} must be a finite number in [-180, 180] "
            "(positions are [lon, lat])",
        )
    if not (-90.0 <= lat <= 90.0):
        raise GeometryError(
            "coordinates_out_of_range",
            f"{where}: latitude {lat!r} must be a finite number in [-90, 90] "
            "(positions are [lon, lat])",
        )


def _coordinate(value: int | float) -> float:
    """A JSON number as float; integers too large for a float become infinity (refused)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _is_number(value: object) -> TypeGuard[int | float]:
    # bool is an int in Python, but `true` is not a coordinate.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_array(value: object) -> TypeGuard[list[Any] | tuple[Any, ...]]:
    return isinstance(value, list | tuple)


def _kind(value: object) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
