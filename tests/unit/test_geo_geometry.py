"""Geofence geometry: every 422 reason with a message saying why, areas, circles at the edges."""

from __future__ import annotations

import math

import numpy as np
import pytest

from geopush.geo.earth import WGS84
from geopush.geo.geometry import (
    MAX_VERTICES,
    Fence,
    GeometryError,
    area_m2,
    circle,
    parse_geometry,
)
from geopush.geo.index import GeofenceIndex

SQUARE = [[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]


def polygon(*rings: list[list[float]]) -> dict[str, object]:
    return {"type": "Polygon", "coordinates": list(rings)}


def refused(obj: object) -> GeometryError:
    with pytest.raises(GeometryError) as info:
        parse_geometry(obj)
    return info.value


# --- every reason --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "reason", "says"),
    [
        (None, "malformed", "JSON object"),
        ([1, 2], "malformed", "JSON object"),
        ({"coordinates": [SQUARE]}, "malformed", "'type'"),
        ({"type": 3}, "malformed", "'type'"),
        ({"type": "Polygon"}, "malformed", "'coordinates'"),
        ({"type": "Polygon", "coordinates": "0,0"}, "malformed", "'coordinates'"),
        (polygon([[0, 0], [1, 0], [1], [0, 0]]), "malformed", "coordinates[0][2]"),
        (polygon([[0, 0], [1, 0], ["1", 1], [0, 0]]), "malformed", "coordinates[0][2]"),
        (polygon([[0, 0], [True, 0], [1, 1], [0, 0]]), "malformed", "coordinates[0][1]"),
        (polygon([[0, 0], [1, 0, 0, 0], [1, 1], [0, 0]]), "malformed", "coordinates[0][1]"),
        ({"type": "MultiPolygon", "coordinates": [SQUARE]}, "malformed", "coordinates[0][0]"),
        ({"type": "Circle", "center": [1], "radius_m": 50}, "malformed", "center"),
        ({"type": "Circle", "center": [1, 2]}, "malformed", "radius_m"),
        ({"type": "Circle", "center": [1, 2], "radius_m": "50"}, "malformed", "radius_m"),
        ({"type": "Circle", "center": [1, 2], "radius_m": True}, "malformed", "radius_m"),
        ({"type": "Point", "coordinates": [0, 0]}, "unsupported_type", "'Point'"),
        ({"type": "Feature", "geometry": {}}, "unsupported_type", "'Feature'"),
        ({"type": "polygon", "coordinates": [SQUARE]}, "unsupported_type", "'polygon'"),
        (polygon(), "too_few_points", "no ring"),
        (polygon([[0, 0], [1, 0], [0, 0]]), "too_few_points", "3 positions"),
        (polygon([[0, 0], [1, 0], [0, 0], [0, 0]]), "too_few_points", "3 distinct"),
        ({"type": "MultiPolygon", "coordinates": []}, "too_few_points", "at least one polygon"),
        (polygon([[0, 0], [1, 0], [1, 1], [0, 1]]), "unclosed_ring", "first position"),
        (
            polygon(SQUARE, [[0.2, 0.2], [0.4, 0.2], [0.4, 0.4], [0.2, 0.5]]),
            "unclosed_ring",
            "hole 1",
        ),
        (
            polygon([[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]),
            "self_intersection",
            "exterior ring (ring 0) intersects itself: self-intersection at lon 0.5, lat 0.5",
        ),
        (polygon([[0, 0], [1, 1], [2, 2], [0, 0]]), "self_intersection", "intersects itself"),
        (
            polygon(SQUARE, [[2, 2], [3, 2], [3, 3], [2, 2]]),
            "self_intersection",
            "hole lies outside shell",
        ),
        (
            {
                "type": "MultiPolygon",
                "coordinates": [[SQUARE], [[[0.5, 0.5], [2, 0.5], [2, 2], [0.5, 0.5]]]],
            },
            "self_intersection",
            "polygons 0 and 1 of the MultiPolygon overlap",
        ),
        ({"type": "Circle", "center": [1, 2], "radius_m": 9.99}, "radius_out_of_bounds", "9.99"),
        (
            {"type": "Circle", "center": [1, 2], "radius_m": 50_000.5},
            "radius_out_of_bounds",
            "between 10 and 50000",
        ),
        ({"type": "Circle", "center": [1, 2], "radius_m": math.nan}, "radius_out_of_bounds", "nan"),
        (
            {"type": "Circle", "center": [181, 2], "radius_m": 50},
            "coordinates_out_of_range",
            "center: longitude 181.0",
        ),
        (
            {"type": "Circle", "center": [1, -90.5], "radius_m": 50},
            "coordinates_out_of_range",
            "latitude -90.5",
        ),
        (
            polygon([[0, 0], [1, 0], [1, 91], [0, 0]]),
            "coordinates_out_of_range",
            "exterior ring (ring 0), position 2: latitude 91.0",
        ),
        (
            polygon([[0, 0], [1, 0], [math.inf, 1], [0, 0]]),
            "coordinates_out_of_range",
            "longitude inf",
        ),
        (polygon([[0, 0], [1, 0], [10**400, 1], [0, 0]]), "coordinates_out_of_range", "longitude"),
        (
            polygon([[179, 0], [-179, 0], [-179, 1], [179, 0]]),
            "crosses_antimeridian",
            "from position 0 (lon 179) to 1 (lon -179)",
        ),
        (
            {
                "type": "MultiPolygon",
                "coordinates": [[SQUARE], [[[170, 0], [-170, 0], [-170, 1], [170, 0]]]],
            },
            "crosses_antimeridian",
            "polygon 1, exterior ring",
        ),
    ],
)
def test_refusal_reason_and_message(obj: object, reason: str, says: str) -> None:
    error = refused(obj)
    assert error.reason == reason
    assert says in error.message, error.message
    assert isinstance(error, ValueError)


def test_too_many_vertices_counts_all_rings_without_closing_positions() -> None:
    def ring(n: int, cx: float) -> list[list[float]]:
        angles = np.linspace(0, 2 * math.pi, n, endpoint=False)
        pts = [[cx + 0.1 * math.cos(a), 0.1 * math.sin(a)] for a in angles]
        return [*pts, pts[0]]

    at_limit = {"type": "MultiPolygon", "coordinates": [[ring(1000, 0)], [ring(1000, 1)]]}
    assert parse_geometry(at_limit).vertex_count == MAX_VERTICES
    over = {"type": "MultiPolygon", "coordinates": [[ring(1000, 0)], [ring(1001, 1)]]}
    error = refused(over)
    assert error.reason == "too_many_vertices"
    assert "2001 vertices" in error.message


def test_check_order_is_stable_when_several_fail() -> None:
    # Out of range and unclosed and crossing: the range check comes first.
    assert refused(polygon([[179, 0], [-179, 0], [-179, 95]])).reason == "coordinates_out_of_range"
    # Unclosed and crossing the antimeridian: closure first.
    assert refused(polygon([[179, 0], [-179, 0], [-179, 1], [179, 1]])).reason == "unclosed_ring"
    # Too many vertices is checked before the values.
    big = [[float(i % 400), 0.0] for i in range(2_002)]
    assert refused(polygon([*big, [999, 0]])).reason == "too_many_vertices"


# --- accepted shapes -----------------------------------------------------------------------


def test_polygon_with_hole_multipolygon_and_altitude_are_accepted() -> None:
    hole = [[0.2, 0.2], [0.2, 0.4], [0.4, 0.4], [0.4, 0.2], [0.2, 0.2]]
    fence = parse_geometry(polygon(SQUARE, hole))
    assert fence.kind == "polygon"
    assert fence.geometry is not None and len(fence.geometry.interiors) == 1
    multi = parse_geometry(
        {"type": "MultiPolygon", "coordinates": [[SQUARE], [[[2, 0], [3, 0], [3, 1], [2, 0]]]]}
    )
    assert multi.vertex_count == 7
    with_altitude = parse_geometry(polygon([[0, 0, 5], [1, 0, 5], [1, 1, 5], [0, 0, 5]]))
    assert with_altitude.geometry is not None and not with_altitude.geometry.has_z


def test_polygon_touching_the_antimeridian_is_accepted() -> None:
    east = parse_geometry(polygon([[179.5, 0], [180, 0], [180, 1], [179.5, 0]]))
    west = parse_geometry(polygon([[-180, 0], [-179.5, 0], [-180, 1], [-180, 0]]))
    assert east.kind == west.kind == "polygon"


def test_circle_fields_and_geojson_round_trip() -> None:
    fence = circle(2.35, 48.85, 150)
    assert fence == Fence(kind="circle", center_lon=2.35, center_lat=48.85, radius_m=150.0)
    assert parse_geometry(fence.to_geojson()) == fence
    square = parse_geometry(polygon(SQUARE))
    assert parse_geometry(square.to_geojson()).geometry == square.geometry


# --- areas ---------------------------------------------------------------------------------


def band_area(lat1: float, lat2: float, dlon: float) -> float:
    """Exact area of a lon/lat rectangle on WGS84 (authalic closed form)."""
    f = 1 / 298.257223563
    e2 = f * (2 - f)
    e = math.sqrt(e2)
    b = 6_378_137.0 * (1 - f)

    def q(lat: float) -> float:
        s = math.sin(math.radians(lat))
        return s / (1 - e2 * s * s) + math.log((1 + e * s) / (1 - e * s)) / (2 * e)

    return math.radians(dlon) * b * b / 2 * (q(lat2) - q(lat1))


@pytest.mark.parametrize(
    ("lon1", "lat1", "lon2", "lat2"),
    [(116.30, 39.90, 116.31, 39.91), (10, 30, 20, 40), (-180, 80, -170, 85), (170, -60, 180, -50)],
)
def test_rectangle_area_matches_the_closed_form(
    lon1: float, lat1: float, lon2: float, lat2: float
) -> None:
    ring = [[lon1, lat1], [lon2, lat1], [lon2, lat2], [lon1, lat2], [lon1, lat1]]
    expected = band_area(lat1, lat2, lon2 - lon1)
    # Edges along parallels are not geodesics: the area is of the lon/lat shape (RFC 7946).
    assert area_m2(parse_geometry(polygon(ring))) == pytest.approx(expected, rel=1e-5)


def test_area_subtracts_holes_and_adds_parts() -> None:
    outer = [[0, 0], [0.02, 0], [0.02, 0.02], [0, 0.02], [0, 0]]
    hole = [[0.005, 0.005], [0.015, 0.005], [0.015, 0.015], [0.005, 0.015], [0.005, 0.005]]
    full = area_m2(parse_geometry(polygon(outer)))
    holed = area_m2(parse_geometry(polygon(outer, hole)))
    assert holed == pytest.approx(full * 0.75, rel=1e-3)
    far = [[1, 0], [1.02, 0], [1.02, 0.02], [1, 0.02], [1, 0]]
    multi = parse_geometry({"type": "MultiPolygon", "coordinates": [[outer, hole], [far]]})
    assert area_m2(multi) == pytest.approx(holed + full, rel=1e-6)


@pytest.mark.parametrize(
    ("lon", "lat", "radius"),
    [(116.4, 39.9, 150), (0, 0, 10), (179.9999, 0, 1000), (-180, 60, 50_000), (45, 89.9, 50_000)],
)
def test_circle_area_is_pi_r_squared(lon: float, lat: float, radius: float) -> None:
    # On a curved surface a geodesic disc is a hair smaller (1e-5 at 50 km).
    assert area_m2(circle(lon, lat, radius)) == pytest.approx(math.pi * radius**2, rel=5e-5)


# --- circles near the antimeridian and the poles -------------------------------------------


@pytest.mark.parametrize(("lon", "lat"), [(179.9995, 0.0), (-179.9995, 64.0), (180.0, -45.0)])
def test_circle_on_the_antimeridian_contains_both_sides(lon: float, lat: float) -> None:
    index = GeofenceIndex.build([("c", circle(lon, lat, 200))])
    azimuths = np.arange(0.0, 360.0, 15.0)
    ones = np.ones_like(azimuths)
    lon_in, lat_in, _ = WGS84.fwd(lon * ones, lat * ones, azimuths, 199.0 * ones)
    lon_out, lat_out, _ = WGS84.fwd(lon * ones, lat * ones, azimuths, 201.0 * ones)
    assert (lon_in > 0).any() and (lon_in < 0).any()  # both sides really are tested
    inside, _ = index.locate(lon_in, lat_in, 0)
    assert all(s == {"c"} for s in inside)
    inside, near = index.locate(lon_out, lat_out, 20)
    assert all(s == frozenset() for s in inside)
    assert all(s == {"c"} for s in near)


def test_circle_edge_is_exact_in_metres_at_any_latitude() -> None:
    for lat in (-85.0, -60.0, 0.0, 45.0, 70.0, 85.0, 89.99):
        index = GeofenceIndex.build([("c", circle(12.0, lat, 100))])
        azimuths = np.arange(0.0, 360.0, 10.0)
        ones = np.ones_like(azimuths)
        on_lon, on_lat, _ = WGS84.fwd(12.0 * ones, lat * ones, azimuths, 100.0 * ones)
        out_lon, out_lat, _ = WGS84.fwd(12.0 * ones, lat * ones, azimuths, 100.05 * ones)
        assert all(s == {"c"} for s in index.locate(on_lon, on_lat, 0)[0]), lat
        assert not any(index.locate(out_lon, out_lat, 0)[0]), lat


def test_polygon_touching_the_antimeridian_is_found_from_the_other_side() -> None:
    fence = parse_geometry(polygon([[179.999, 10], [180, 10], [180, 10.001], [179.999, 10]]))
    index = GeofenceIndex.build([("p", fence)])
    inside, near = index.locate(
        np.array([-180.0, -179.99999, -179.9997, 179.9999]),
        np.array([10.0005, 10.0005, 10.0005, 10.00001]),
        20,
    )
    assert inside == [{"p"}, set(), set(), {"p"}]  # -180 is the meridian 180: on the edge
    assert near == [{"p"}, {"p"}, set(), {"p"}]  # 1.1 m away; 33 m away


def test_polygon_buffer_is_geodesic_at_high_latitude() -> None:
    # Near a vertex at 85°, diagonally: a flat lon/lat plane would be 32 cm off at 1 km.
    fence = parse_geometry(polygon([[0, 84.9], [0, 85], [-0.01, 85], [0, 84.9]]))
    index = GeofenceIndex.build([("p", fence)])
    lons, lats, _ = WGS84.fwd(np.zeros(2), np.full(2, 85.0), np.full(2, 45.0), [999.99, 1000.01])
    assert index.locate(lons, lats, 1000)[1] == [{"p"}, set()]


@pytest.mark.parametrize("lat", [-89.0, -85.0, -40.0, 0.0, 30.0, 70.0, 84.0, 88.0])
@pytest.mark.parametrize("distance", [1.0, 20.0, 2_000.0, 50_020.0])
def test_degree_reach_bounds_every_geodesic_displacement(lat: float, distance: float) -> None:
    """The index's boxes must never miss a candidate: check the reach against the geodesic."""
    from geopush.geo.earth import degree_reach

    dlon, dlat = degree_reach(abs(lat), distance)
    azimuths = np.linspace(0, 360, 3601)
    lons, lats, _ = WGS84.fwd(
        np.zeros_like(azimuths),
        np.full_like(azimuths, lat),
        azimuths,
        np.full_like(azimuths, distance),
    )
    assert np.all(np.abs(lats - lat) <= dlat)
    assert dlon >= 180 or np.all(np.abs(lons) <= dlon)
