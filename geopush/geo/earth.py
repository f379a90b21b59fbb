"""The WGS84 ellipsoid: geodesic distances and local scale factors, shared by the geo core.

Geodesics come from pyproj (Karney's algorithm, nanometre accurate, any latitude, across the
antimeridian). The local scale factors (metres per degree of latitude and of longitude at a
given latitude) turn short lon/lat offsets into metres without a projection; over tens of
metres their error is far below SPEC's 0.1 %.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pyproj import Geod

WGS84 = Geod(ellps="WGS84")

SEMI_MAJOR_M = 6_378_137.0
FLATTENING = 1 / 298.257223563
ECCENTRICITY2 = FLATTENING * (2 - FLATTENING)
# The smallest radius of curvature of the ellipsoid (meridional, at the equator): no
# displacement of d metres moves a point by more than d / this radians of latitude.
MIN_CURVATURE_RADIUS_M = SEMI_MAJOR_M * (1 - ECCENTRICITY2)
_DEG = math.pi / 180.0


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Geodesic distance between two points, in metres."""
    return float(WGS84.inv(lon1, lat1, lon2, lat2)[2])


def distances_m(
    lon1: ArrayLike, lat1: ArrayLike, lon2: ArrayLike, lat2: ArrayLike
) -> NDArray[np.float64]:
    """Vectorized geodesic distances, in metres (pyproj loops in C)."""
    a = [np.ascontiguousarray(v, dtype=np.float64) for v in (lon1, lat1, lon2, lat2)]
    if a[0].size == 0:
        return np.empty(0, dtype=np.float64)
    return np.asarray(WGS84.inv(a[0], a[1], a[2], a[3])[2], dtype=np.float64)


def metres_per_degree(lat: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(metres per degree of longitude, of latitude) at geodetic latitude `lat` (degrees).

    N·cos φ along a parallel and M along a meridian, the ellipsoid's radii of curvature.
    """
    phi = np.radians(np.asarray(lat, dtype=np.float64))
    w2 = 1.0 - ECCENTRICITY2 * np.sin(phi) ** 2
    n = SEMI_MAJOR_M / np.sqrt(w2)
    m = SEMI_MAJOR_M * (1.0 - ECCENTRICITY2) / (w2 * np.sqrt(w2))
    return n * np.cos(phi) * _DEG, m * _DEG


def metres_per_degree_scalar(lat: float) -> tuple[float, float]:
    """`metres_per_degree` for one latitude, in plain Python (no array overhead)."""
    phi = lat * _DEG
    s = math.sin(phi)
    w2 = 1.0 - ECCENTRICITY2 * s * s
    w = math.sqrt(w2)
    return SEMI_MAJOR_M / w * math.cos(phi) * _DEG, SEMI_MAJOR_M * (1.0 - ECCENTRICITY2) / (
        w2 * w) * _DEG


def degree_reach(max_abs_lat: float, distance: float) -> tuple[float, float]:
    """Conservative (Δlon, Δlat) in degrees that a displacement of `distance` metres can span.

    For bounding boxes before an exact test: Δlat uses the smallest radius of curvature and a
    2 % margin; Δlon is the spherical cap's half-width taken at the cap's most poleward
    latitude. Δlon is 360 when the reach touches a pole (every longitude is then reachable).
    """
    dlon, dlat = degree_reach_array(np.array([max_abs_lat]), distance)
    return float(dlon[0]), float(dlat[0])


def degree_reach_array(
    max_abs_lat: ArrayLike, distance: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """`degree_reach` for many latitudes (and distances) at once."""
    distance = np.asarray(distance, dtype=np.float64)
    dlat = np.degrees(distance * 1.02 / MIN_CURVATURE_RADIUS_M) + 1e-9
    top = np.abs(np.asarray(max_abs_lat, dtype=np.float64)) + dlat
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.sin(np.radians(dlat)) / np.cos(np.radians(np.minimum(top, 90.0)))
        dlon = np.degrees(np.arcsin(np.minimum(ratio, 1.0))) + 1e-9
    dlon = np.where((top >= 89.999) | (ratio >= 1.0), 360.0, dlon)
    return dlon, np.broadcast_to(dlat, dlon.shape).copy()
