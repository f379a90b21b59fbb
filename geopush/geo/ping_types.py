"""What SPEC section 2 works on: a ping, the device's last accepted fix, the `[geo]`
rules, a batch's result, and the sequential checks against the last fix. Both ways of
filtering a batch (`filters`, ping by ping; `ping_columns`, as arrays) share them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from geopush.codes import PingRejection
from geopush.geo.earth import distance_m


@dataclass(frozen=True)
class Ping:
    """A well-formed ping; `index` is its position in the request, `ts` is UTC."""

    index: int
    lat: float
    lon: float
    accuracy_m: float
    ts: datetime
    speed_mps: float | None
    mocked: bool


@dataclass(frozen=True)
class LastFix:
    """The device's last accepted ping: what the sequential checks compare with.

    Its position is None once retention has forgotten it: the order check still applies,
    the speed check has nothing to measure from.
    """

    ts: datetime
    lat: float | None
    lon: float | None


@dataclass(frozen=True)
class PingRules:
    """The `[geo]` settings of SPEC section 2."""

    future_skew_s: float = 60
    max_ping_age_s: float = 86_400
    max_accuracy_m: float = 150
    max_speed_mps: float = 70
    min_ping_interval_s: float = 1.0


@dataclass(frozen=True)
class FilterResult:
    """Accepted pings in ts order, rejections by request index, the last accepted fix after."""

    accepted: list[Ping]
    rejected: list[tuple[int, PingRejection]]
    last: LastFix | None


def sequential_reason(ping: Ping, last: LastFix | None, rules: PingRules) -> PingRejection | None:
    if last is None:
        return None
    if ping.ts <= last.ts:
        return PingRejection.OUT_OF_ORDER
    elapsed = (ping.ts - last.ts).total_seconds()
    if elapsed < rules.min_ping_interval_s:
        return PingRejection.TOO_FREQUENT
    if last.lat is None or last.lon is None:
        return None
    if distance_m(last.lon, last.lat, ping.lon, ping.lat) / elapsed > rules.max_speed_mps:
        return PingRejection.IMPLAUSIBLE_SPEED
    return None
