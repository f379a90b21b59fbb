"""Ping validation and filters (SPEC section 2): which pings of a batch are accepted, and why not.

Pure: the caller passes the JSON-decoded pings exactly as the app sent them, the device's last
accepted fix and the server clock; nothing here reads a clock or a database.

Two stages, as SPEC orders them. First the checks that look at one ping alone (`invalid`,
`future`, `too_old`, `mocked`, `low_accuracy`); then the survivors are sorted by ts (stable on
request index) and compared one by one with the last *accepted* fix, which moves forward as
pings are accepted (`out_of_order`, `too_frequent`, `implausible_speed`). A rejected ping
changes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from geopush.codes import PingRejection
from geopush.geo.ping_columns import filter_columns
from geopush.geo.ping_types import FilterResult, LastFix, Ping, PingRules, sequential_reason
from geopush.timefmt import parse_rfc3339

__all__ = ["PING_SCHEMA", "FilterResult", "LastFix", "Ping", "PingRules", "accepted_after",
           "filter_each", "filter_pings", "parse_ping", "parse_rfc3339"]


def filter_pings(
    raw: Sequence[object], last: LastFix | None, now: datetime, rules: PingRules
) -> FilterResult:
    """Apply SPEC section 2 to one batch. `now` and `last.ts` must be timezone-aware."""
    _require_aware(now, "now")
    if last is not None:
        _require_aware(last.ts, "last.ts")
    columns = filter_columns(raw, last, now, rules)  # a phone's batch, as arrays
    return columns if columns is not None else filter_each(raw, last, now, rules)


def filter_each(
    raw: Sequence[object], last: LastFix | None, now: datetime, rules: PingRules
) -> FilterResult:
    """`filter_pings` ping by ping: for any batch, whatever its items hold."""
    window = _Window(
        latest=now + timedelta(seconds=rules.future_skew_s),
        earliest=now - timedelta(seconds=rules.max_ping_age_s),
        max_accuracy_m=rules.max_accuracy_m,
    )
    rejected: list[tuple[int, PingRejection]] = []
    candidates: list[Ping] = []
    for index, item in enumerate(raw):
        ping = parse_ping(index, item)
        reason = PingRejection.INVALID if ping is None else _stateless_reason(ping, window)
        if reason is not None:
            rejected.append((index, reason))
        elif ping is not None:
            candidates.append(ping)

    accepted: list[Ping] = []
    candidates.sort(key=lambda p: (p.ts, p.index))
    for ping in candidates:
        reason = sequential_reason(ping, last, rules)
        if reason is not None:
            rejected.append((ping.index, reason))
            continue
        accepted.append(ping)
        last = LastFix(ts=ping.ts, lat=ping.lat, lon=ping.lon)
    rejected.sort()
    return FilterResult(accepted=accepted, rejected=rejected, last=last)


def accepted_after(ping: Ping, last: LastFix | None, rules: PingRules) -> bool:
    """Whether `ping` passes the sequential checks after `last`. When a batch's earliest
    accepted ping (filtered with no last fix) passes them, the batch's filtering after
    `last` is the same: callers reuse it rather than filter again."""
    return sequential_reason(ping, last, rules) is None


# What a well-formed ping is, written once: `parse_ping` checks these bounds, and the API
# documents the same ones as the JSON schema of a batch's items.
LAT_RANGE = (-90.0, 90.0)
LON_RANGE = (-180.0, 180.0)
PING_SCHEMA: dict[str, object] = {
    "type": "object",
    "required": ["lat", "lon", "accuracy_m", "ts"],
    "properties": {
        "lat": {"type": "number", "minimum": LAT_RANGE[0], "maximum": LAT_RANGE[1]},
        "lon": {"type": "number", "minimum": LON_RANGE[0], "maximum": LON_RANGE[1]},
        "accuracy_m": {"type": "number", "minimum": 0},
        "ts": {"type": "string", "format": "date-time"},
        "speed_mps": {"type": ["number", "null"]},
        "mocked": {"type": ["boolean", "null"]},
    },
}


def parse_ping(index: int, item: object) -> Ping | None:
    """The ping if it is well formed (the `invalid` rule of SPEC section 2), else None.

    Numbers must be JSON numbers: strings and booleans are refused, as are NaN and infinities
    (which Python's json module accepts). `speed_mps` is optional and informative only: null
    or a negative value (iOS reports -1 for "unknown") becomes None. `mocked` is optional
    (null means false) but must be a boolean when present.
    """
    if not isinstance(item, Mapping):
        return None
    lat, lon, accuracy = (_finite(item.get(key)) for key in ("lat", "lon", "accuracy_m"))
    if lat is None or lon is None or accuracy is None:
        return None
    if (not (LAT_RANGE[0] <= lat <= LAT_RANGE[1] and LON_RANGE[0] <= lon <= LON_RANGE[1])
            or accuracy < 0.0):
        return None
    ts_text = item.get("ts")
    ts = parse_rfc3339(ts_text) if isinstance(ts_text, str) else None
    if ts is None:
        return None
    speed_raw = item.get("speed_mps")
    speed = _finite(speed_raw)
    if speed_raw is not None and speed is None:
        return None
    mocked = item.get("mocked")
    if mocked is not None and not isinstance(mocked, bool):
        return None
    return Ping(
        index=index,
        lat=lat,
        lon=lon,
        accuracy_m=accuracy,
        ts=ts,
        speed_mps=speed if speed is not None and speed >= 0.0 else None,
        mocked=bool(mocked),
    )


@dataclass(frozen=True)
class _Window:
    """The per-batch bounds of the stateless checks, computed once per batch."""

    latest: datetime
    earliest: datetime
    max_accuracy_m: float


def _stateless_reason(ping: Ping, window: _Window) -> PingRejection | None:
    if ping.ts > window.latest:
        return PingRejection.FUTURE
    if ping.ts < window.earliest:
        return PingRejection.TOO_OLD
    if ping.mocked:
        return PingRejection.MOCKED
    if ping.accuracy_m > window.max_accuracy_m:
        return PingRejection.LOW_ACCURACY
    return None


def _finite(value: object) -> float | None:
    """A JSON number as a finite float, else None (bool is an int in Python, not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
