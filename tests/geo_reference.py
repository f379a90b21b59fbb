"""An independent, deliberately simple reference of SPEC sections 2-3, used as a test oracle.

Written differently from `geopush.geo` on purpose, so that a shared mistake is unlikely:

- distances: Vincenty's inverse formula in plain Python (not pyproj), and for polygon edges
  the straight-line (chord) distance between ECEF points, minimised along each lon/lat edge by
  golden-section search (not a local metric plane);
- polygon containment: ray casting with an explicit on-edge test, in exact rational
  arithmetic (`fractions.Fraction`) whenever the point is within 1e-9° of an edge, for every
  representation of the point's longitude (lon, lon ± 360);
- timestamps: a character-shape check and slicing (not a regular expression);
- filters and visits: one loop per ping and per geofence, no vectorization, no index.

Float implementations can disagree on points a hair from a boundary. Where that is possible the
reference says so instead of guessing: containment and nearness are tri-state (`IN`, `OUT`,
`AMBIGUOUS`), `AMBIGUOUS` meaning "within `CIRCLE_BAND_M` of a circle's edge or of the buffer
distance" (polygon containment is exact, so never ambiguous). The tests then accept either
answer for those pairs only. Likewise a speed within `SPEED_BAND` (relative) of the limit is
flagged, and tests discard such examples.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from fractions import Fraction
from typing import Any

A = 6_378_137.0
F = 1 / 298.257223563
B = A * (1 - F)
E2 = F * (2 - F)

# Vincenty (~0.1 mm) against Karney (nm) plus float noise: closer than this to a circle's edge
# or to the buffer distance, both answers are right.
CIRCLE_BAND_M = 0.002
# The implementation finds the nearest edge point in a local plane, then measures it
# geodesically (µm); the reference's chord and golden-section search are as good.
POLYGON_BAND_M = 0.002
SPEED_BAND = 1e-6


class Tri(Enum):
    IN = "in"
    OUT = "out"
    AMBIGUOUS = "ambiguous"


# --- geodesy -------------------------------------------------------------------------------


def vincenty_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Geodesic distance on WGS84 by Vincenty's inverse formula (fine short of antipodes)."""
    if lon1 == lon2 and lat1 == lat2:
        return 0.0
    u1 = math.atan((1 - F) * math.tan(math.radians(lat1)))
    u2 = math.atan((1 - F) * math.tan(math.radians(lat2)))
    big_l = math.radians(lon2 - lon1)
    sin_u1, cos_u1, sin_u2, cos_u2 = math.sin(u1), math.cos(u1), math.sin(u2), math.cos(u2)
    lam = big_l
    for _ in range(200):
        sin_lam, cos_lam = math.sin(lam), math.cos(lam)
        sin_sigma = math.hypot(cos_u2 * sin_lam, cos_u1 * sin_u2 - sin_u1 * cos_u2 * cos_lam)
        if sin_sigma == 0.0:
            return 0.0
        cos_sigma = sin_u1 * sin_u2 + cos_u1 * cos_u2 * cos_lam
        sigma = math.atan2(sin_sigma, cos_sigma)
        sin_alpha = cos_u1 * cos_u2 * sin_lam / sin_sigma
        cos2_alpha = 1 - sin_alpha * sin_alpha
        cos_2sm = cos_sigma - 2 * sin_u1 * sin_u2 / cos2_alpha if cos2_alpha else 0.0
        c = F / 16 * cos2_alpha * (4 + F * (4 - 3 * cos2_alpha))
        previous = lam
        lam = big_l + (1 - c) * F * sin_alpha * (
            sigma + c * sin_sigma * (cos_2sm + c * cos_sigma * (-1 + 2 * cos_2sm * cos_2sm))
        )
        if abs(lam - previous) < 1e-13:
            break
    u_sq = cos2_alpha * (A * A - B * B) / (B * B)
    k1 = u_sq / 1024 * (256 + u_sq * (-128 + u_sq * (74 - 47 * u_sq)))
    big_a = 1 + u_sq / 16384 * (4096 + u_sq * (-768 + u_sq * (320 - 175 * u_sq)))
    delta_sigma = (
        k1
        * sin_sigma
        * (
            cos_2sm
            + k1
            / 4
            * (
                cos_sigma * (-1 + 2 * cos_2sm * cos_2sm)
                - k1 / 6 * cos_2sm * (-3 + 4 * sin_sigma**2) * (-3 + 4 * cos_2sm**2)
            )
        )
    )
    return B * big_a * (sigma - delta_sigma)


def ecef(lon: float, lat: float) -> tuple[float, float, float]:
    phi, lam = math.radians(lat), math.radians(lon)
    n = A / math.sqrt(1 - E2 * math.sin(phi) ** 2)
    return (
        n * math.cos(phi) * math.cos(lam),
        n * math.cos(phi) * math.sin(lam),
        n * (1 - E2) * math.sin(phi),
    )


def chord_m(p: tuple[float, float, float], lon: float, lat: float) -> float:
    return math.dist(p, ecef(lon, lat))


def edge_distance_m(
    lon: float, lat: float, a: tuple[float, float], b: tuple[float, float]
) -> float:
    """Metres from a point to the lon/lat-straight edge a-b (short edges: unimodal distance)."""
    p = ecef(lon, lat)
    da, db = chord_m(p, *a), chord_m(p, *b)
    if a == b:
        return da

    def at(t: float) -> float:
        return chord_m(p, a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1]))

    lo, hi = 0.0, 1.0
    inv_phi = (math.sqrt(5) - 1) / 2
    x1, x2 = hi - inv_phi * (hi - lo), lo + inv_phi * (hi - lo)
    f1, f2 = at(x1), at(x2)
    for _ in range(50):  # 0.618**50: 1e-10 of the edge
        if f1 <= f2:
            hi, x2, f2 = x2, x1, f1
            x1 = hi - inv_phi * (hi - lo)
            f1 = at(x1)
        else:
            lo, x1, f1 = x1, x2, f2
            x2 = lo + inv_phi * (hi - lo)
            f2 = at(x2)
    return min(da, db, f1, f2)


# --- geofences -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RefCircle:
    lon: float
    lat: float
    radius_m: float


@dataclass(frozen=True)
class RefPolygons:
    """Polygons as lists of rings of (lon, lat); ring 0 the exterior, the rest holes."""

    polygons: tuple[tuple[tuple[tuple[float, float], ...], ...], ...]


RefFence = RefCircle | RefPolygons


def ref_fence(geometry: Mapping[str, Any]) -> RefFence:
    """The reference's reading of a (valid) GeoJSON geometry."""
    if geometry["type"] == "Circle":
        lon, lat = geometry["center"][:2]
        return RefCircle(float(lon), float(lat), float(geometry["radius_m"]))
    polygons = geometry["coordinates"]
    if geometry["type"] == "Polygon":
        polygons = [polygons]
    return RefPolygons(
        tuple(
            tuple(tuple((float(p[0]), float(p[1])) for p in ring) for ring in poly)
            for poly in polygons
        )
    )


def _on_segment(
    px: Fraction, py: Fraction, ax: Fraction, ay: Fraction, bx: Fraction, by: Fraction
) -> bool:
    cross = (bx - ax) * (py - ay) - (by - ay) * (px - ax)
    return cross == 0 and min(ax, bx) <= px <= max(ax, bx) and min(ay, by) <= py <= max(ay, by)


def _in_polygon_exact(
    lon: float, lat: float, rings: Sequence[Sequence[tuple[float, float]]]
) -> bool:
    """Even-odd ray casting over all rings, exact; on any edge means inside.

    Floats decide when the point is clearly off every edge (by more than 1e-9°, where the
    float crossing test cannot be wrong); otherwise rational arithmetic decides, exactly.
    """
    clear = True
    crossings = 0
    for ring in rings:
        for (x1, y1), (x2, y2) in itertools.pairwise(ring):
            if _near_segment(lon, lat, x1, y1, x2, y2, 1e-9):
                clear = False
            if (y1 > lat) != (y2 > lat) and lon < x1 + (lat - y1) * (x2 - x1) / (y2 - y1):
                crossings += 1
    if clear:
        return crossings % 2 == 1
    px, py = Fraction(lon), Fraction(lat)
    crossings = 0
    for ring in rings:
        for (x1, y1), (x2, y2) in itertools.pairwise(ring):
            ax, ay, bx, by = Fraction(x1), Fraction(y1), Fraction(x2), Fraction(y2)
            if _on_segment(px, py, ax, ay, bx, by):
                return True
            if (ay > py) != (by > py):
                x_cross = ax + (py - ay) * (bx - ax) / (by - ay)
                if px < x_cross:
                    crossings += 1
    return crossings % 2 == 1


def _near_segment(
    px: float, py: float, x1: float, y1: float, x2: float, y2: float, eps: float
) -> bool:
    """Whether the point is within about `eps` degrees of the segment (a coarse float test)."""
    if px < min(x1, x2) - eps or px > max(x1, x2) + eps:
        return False
    if py < min(y1, y2) - eps or py > max(y1, y2) + eps:
        return False
    dx, dy = x2 - x1, y2 - y1
    length = math.hypot(dx, dy)
    if length == 0.0:
        return True
    return abs(dx * (py - y1) - dy * (px - x1)) / length <= eps


def ref_inside(lon: float, lat: float, fence: RefFence) -> Tri:
    if isinstance(fence, RefCircle):
        d = vincenty_m(fence.lon, fence.lat, lon, lat)
        return _compare(d, fence.radius_m, CIRCLE_BAND_M)
    for representation in (lon, lon - 360.0, lon + 360.0):
        for rings in fence.polygons:
            if _in_polygon_exact(representation, lat, rings):
                return Tri.IN
    return Tri.OUT


def ref_near(lon: float, lat: float, fence: RefFence, buffer_m: float) -> Tri:
    """Within `buffer_m` metres of the geofence (containment included)."""
    return ref_locate(lon, lat, fence, buffer_m)[1]


def ref_locate(lon: float, lat: float, fence: RefFence, buffer_m: float) -> tuple[Tri, Tri]:
    """(inside, within `buffer_m`) for one point and one geofence."""
    if isinstance(fence, RefCircle):
        d = vincenty_m(fence.lon, fence.lat, lon, lat)
        return (
            _compare(d, fence.radius_m, CIRCLE_BAND_M),
            _compare(d, fence.radius_m + buffer_m, CIRCLE_BAND_M),
        )
    inside = ref_inside(lon, lat, fence)
    if inside is Tri.IN:
        return Tri.IN, Tri.IN
    return inside, _polygon_near(lon, lat, fence, buffer_m)


def _polygon_near(lon: float, lat: float, fence: RefPolygons, buffer_m: float) -> Tri:
    p = ecef(lon, lat)
    best = math.inf
    for rings in fence.polygons:
        for ring in rings:
            for a, b in itertools.pairwise(ring):
                ea, eb = ecef(*a), ecef(*b)
                # The lon/lat edge bows away from the straight 3-D chord a-b by less than
                # `slack` (Earth's curvature plus the parallels' curvature, generously): the
                # chord decides unless the point is within `slack` of the buffer distance.
                length = math.dist(ea, eb)
                tan_lat = math.tan(math.radians(min(89.0, max(abs(a[1]), abs(b[1])))))
                slack = 0.5 + length * length / (8 * A) * (2 + 2 * tan_lat)
                approx = _segment_distance_3d(p, ea, eb)
                if approx - slack > buffer_m + POLYGON_BAND_M:
                    continue
                if approx + slack < buffer_m - POLYGON_BAND_M:
                    return Tri.IN
                best = min(best, edge_distance_m(lon, lat, a, b))
                if best < buffer_m - POLYGON_BAND_M:
                    return Tri.IN
    return _compare(best, buffer_m, POLYGON_BAND_M)


def _segment_distance_3d(
    p: tuple[float, float, float], a: tuple[float, float, float], b: tuple[float, float, float]
) -> float:
    ab = [b[i] - a[i] for i in range(3)]
    ap = [p[i] - a[i] for i in range(3)]
    length2 = sum(c * c for c in ab)
    t = 0.0 if length2 == 0 else max(0.0, min(1.0, sum(ab[i] * ap[i] for i in range(3)) / length2))
    return math.dist(p, [a[i] + t * ab[i] for i in range(3)])


def _compare(distance: float, limit: float, band: float) -> Tri:
    if distance < limit - band:
        return Tri.IN
    if distance > limit + band:
        return Tri.OUT
    return Tri.AMBIGUOUS


# --- pings ---------------------------------------------------------------------------------


def ref_parse_ts(text: object) -> datetime | None:
    """RFC 3339 by shape: 'DDDD-DD-DDTDD:DD:DD[.D+](Z|+DD:DD)', T may be t or a space."""
    if not isinstance(text, str) or len(text) < 20:
        return None
    if not all(c.isascii() for c in text):
        return None
    shape = "".join("D" if c.isdigit() else c for c in text)
    head, rest = shape[:19], shape[19:]
    if head[:10] != "DDDD-DD-DD" or head[10] not in "Tt " or head[11:] != "DD:DD:DD":
        return None
    fraction = ""
    if rest.startswith("."):
        digits = len(rest) - len(rest[1:].lstrip("D"))
        if digits == 1:
            return None
        fraction = text[20 : 19 + digits]
        rest = rest[digits:]
    if rest in ("Z", "z"):
        offset = timedelta(0)
    elif len(rest) == 6 and rest[0] in "+-" and rest[1:] == "DD:DD":
        sign_text = text[-6]
        hours, minutes = int(text[-5:-3]), int(text[-2:])
        if hours > 23 or minutes > 59:
            return None
        offset = timedelta(hours=hours, minutes=minutes)
        if sign_text == "-":
            offset = -offset
    else:
        return None
    second = int(text[17:19])
    if second > 60:  # 60 is a leap second; beyond it is no time at all
        return None
    try:
        value = datetime(
            int(text[0:4]),
            int(text[5:7]),
            int(text[8:10]),
            int(text[11:13]),
            int(text[14:16]),
            min(second, 59),
            int((fraction + "000000")[:6]),
            tzinfo=timezone(offset),
        ).astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return value + timedelta(seconds=1) if second == 60 else value


def _number(value: object) -> float | None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except OverflowError:
        return None
    return None if x != x or x in (math.inf, -math.inf) else x


@dataclass
class RefFix:
    index: int
    ts: datetime
    lat: float
    lon: float


@dataclass
class RefFilterOutcome:
    accepted: list[RefFix]
    rejected: list[tuple[int, str]]
    last: RefFix | None
    speed_ambiguous: bool = False


def ref_filter(
    raw: Sequence[object],
    last: RefFix | None,
    now: datetime,
    *,
    future_skew_s: float = 60,
    max_ping_age_s: float = 86_400,
    max_accuracy_m: float = 150,
    max_speed_mps: float = 70,
    min_ping_interval_s: float = 1.0,
) -> RefFilterOutcome:
    """SPEC section 2, one ping at a time."""
    reasons: dict[int, str] = {}
    valid: list[RefFix] = []
    for i, item in enumerate(raw):
        fix = _ref_valid(i, item)
        if fix is None:
            reasons[i] = "invalid"
            continue
        assert isinstance(item, dict)
        if fix.ts > now + timedelta(seconds=future_skew_s):
            reasons[i] = "future"
        elif fix.ts < now - timedelta(seconds=max_ping_age_s):
            reasons[i] = "too_old"
        elif item.get("mocked") is True:
            reasons[i] = "mocked"
        elif float(item["accuracy_m"]) > max_accuracy_m:
            reasons[i] = "low_accuracy"
        else:
            valid.append(fix)
    outcome = RefFilterOutcome(accepted=[], rejected=[], last=last)
    for fix in sorted(valid, key=lambda f: (f.ts, f.index)):
        previous = outcome.last
        if previous is not None:
            if fix.ts <= previous.ts:
                reasons[fix.index] = "out_of_order"
                continue
            seconds = (fix.ts - previous.ts) / timedelta(seconds=1)
            if seconds < min_ping_interval_s:
                reasons[fix.index] = "too_frequent"
                continue
            speed = vincenty_m(previous.lon, previous.lat, fix.lon, fix.lat) / seconds
            if abs(speed - max_speed_mps) <= SPEED_BAND * max_speed_mps:
                outcome.speed_ambiguous = True
            if speed > max_speed_mps:
                reasons[fix.index] = "implausible_speed"
                continue
        outcome.accepted.append(fix)
        outcome.last = fix
    outcome.rejected = sorted(reasons.items())
    return outcome


def _ref_valid(index: int, item: object) -> RefFix | None:
    if type(item) is not dict:
        return None
    lat, lon, accuracy = _number(item.get("lat")), _number(item.get("lon")), None
    if "accuracy_m" in item:
        accuracy = _number(item["accuracy_m"])
    if lat is None or lon is None or accuracy is None:
        return None
    if lat < -90 or lat > 90 or lon < -180 or lon > 180 or accuracy < 0:
        return None
    ts = ref_parse_ts(item.get("ts"))
    if ts is None:
        return None
    if item.get("speed_mps") is not None and _number(item["speed_mps"]) is None:
        return None
    if item.get("mocked") is not None and type(item["mocked"]) is not bool:
        return None
    return RefFix(index, ts, lat, lon)


# --- visits --------------------------------------------------------------------------------


@dataclass
class RefVisitState:
    last_ts: datetime | None = None
    # geofence id -> [entered_at, dwell_fired]
    inside: dict[str, list[Any]] = field(default_factory=dict)
    # every enter so far, in device time (the bound looks at the hour before each one)
    enters: list[datetime] = field(default_factory=list)


def ref_visits(
    state: RefVisitState,
    pings: Sequence[tuple[datetime, Mapping[str, bool], Mapping[str, bool]]],
    dwell_s: Mapping[str, int],
    *,
    visit_timeout_s: float = 3_600,
    max_enters_per_hour: int = 60,
) -> list[tuple[str, str, datetime]]:
    """SPEC section 3 per ping and per geofence; `pings` are (ts, inside?, near?) by geofence.

    Mutates `state`. Events are (type, geofence id, ts), exits then enters then dwells within a
    ping, by geofence id within a kind.
    """
    for gid in list(state.inside):
        if gid not in dwell_s:
            del state.inside[gid]
    events: list[tuple[str, str, datetime]] = []
    for ts, inside, near in pings:
        if state.last_ts is not None and (ts - state.last_ts).total_seconds() > visit_timeout_s:
            for gid in sorted(state.inside):
                events.append(("exit", gid, state.last_ts))
            state.inside = {}
        exits, enters, dwells = [], [], []
        # Only geofences with an open visit or containing the point can change.
        touched = set(state.inside) | {gid for gid, is_in in inside.items() if is_in}
        for gid in sorted(touched & set(dwell_s)):
            is_in, is_near = inside.get(gid, False), near.get(gid, False) or inside.get(gid, False)
            if gid in state.inside and not is_near:
                exits.append(("exit", gid, ts))
                del state.inside[gid]
            elif gid not in state.inside and is_in and _ref_enter_allowed(
                    state, ts, max_enters_per_hour):
                state.enters.append(ts)
                enters.append(("enter", gid, ts))
                state.inside[gid] = [ts, False]
            if gid in state.inside:
                entered_at, fired = state.inside[gid]
                if not fired and (ts - entered_at).total_seconds() >= dwell_s[gid]:
                    dwells.append(("dwell", gid, ts))
                    state.inside[gid][1] = True
        events += exits + enters + dwells
        state.last_ts = ts
    return events


def _ref_enter_allowed(state: RefVisitState, ts: datetime, limit: int) -> bool:
    """Fewer than `limit` enters in the 3600 s of device time ending at `ts` (0: no bound)."""
    if limit == 0:
        return True
    return sum(1 for t in state.enters if timedelta(0) <= ts - t < timedelta(hours=1)) < limit
