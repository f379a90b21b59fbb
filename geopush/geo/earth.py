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


# --- areas of shapes whose edges are straight in lon/lat ---------------------------------
#
# SPEC section 3 (after RFC 7946) draws a polygon's edges as straight lines in lon/lat, not
# as geodesics; the two differ more the longer the edge (a 178°-wide edge along a parallel
# is a parallel, while the geodesic between its ends bulges towards the pole). The index
# matches pings against the lon/lat shape, so its area is the one to report. On the
# ellipsoid the area element is (a²/2)·dq·dλ, where q(φ) is the authalic function (Snyder,
# "Map Projections: A Working Manual", eq. 3-12); by Green's theorem a ring's area is
# (a²/2)·|∮ q(φ) dλ|, and along an edge straight in lon/lat, λ and φ both vary linearly, so
# the edge's share is Δλ times the mean of q over its latitudes. q is smooth on [-90°, 90°]:
# a 16-point Gauss-Legendre rule gives that mean to double precision for any edge, so the
# area is exact for any size of edge in a fixed amount of work per vertex (no densifying).

_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(16)
_GL_T = (_GL_NODES + 1.0) / 2.0  # nodes on [0, 1]
_GL_W = _GL_WEIGHTS / 2.0
_E = math.sqrt(ECCENTRICITY2)


def _authalic_q(phi: NDArray[np.float64]) -> NDArray[np.float64]:
    s = np.sin(phi)
    return (1.0 - ECCENTRICITY2) * (
        s / (1.0 - ECCENTRICITY2 * s * s) - np.log((1.0 - _E * s) / (1.0 + _E * s)) / (2.0 * _E)
    )


def lonlat_ring_area_m2(lons: ArrayLike, lats: ArrayLike) -> float:
    """Area on WGS84 of a closed ring whose edges are straight lines in lon/lat (degrees).

    The ring must be closed (first position repeated last) and must not cross the
    antimeridian. O(vertices); vectorized.
    """
    lam = np.radians(np.asarray(lons, dtype=np.float64))
    phi = np.radians(np.asarray(lats, dtype=np.float64))
    if lam.size < 4:
        return 0.0
    # q relative to the ring's mean latitude: Σ Δλ = 0 on a closed ring, so the constant
    # changes nothing but keeps the terms small (no cancellation for a 10 m square).
    q0 = _authalic_q(np.array([phi.mean()]))[0]
    phi1, dphi = phi[:-1], np.diff(phi)
    along = phi1[:, None] + dphi[:, None] * _GL_T[None, :]
    mean_q = (_authalic_q(along) - q0) @ _GL_W
    return float(abs(np.dot(mean_q, np.diff(lam))) * SEMI_MAJOR_M * SEMI_MAJOR_M / 2.0)


def geodesic_disc_area_m2(lat: float, radius_m: float) -> float:
    """Area on WGS84 of the points within `radius_m` (geodesic) of a centre at `lat`.

    A disc of radius r on a surface of Gaussian curvature K has area (4π/K)·sin²(r√K/2);
    on the ellipsoid K = 1/(M·N) at the centre, and over a geofence (r ≤ 50 km) K varies so
    little that a 50 km circle agrees with a 200,000-vertex geodesic polygon to 1e-9. O(1),
    where measuring a 720-vertex polygon cost a millisecond per circle.
    """
    phi = math.radians(lat)
    w2 = 1.0 - ECCENTRICITY2 * math.sin(phi) ** 2
    n = SEMI_MAJOR_M / math.sqrt(w2)
    m = SEMI_MAJOR_M * (1.0 - ECCENTRICITY2) / (w2 * math.sqrt(w2))
    rho = math.sqrt(m * n)  # 1/√K
    return 4.0 * math.pi * rho * rho * math.sin(radius_m / (2.0 * rho)) ** 2
