"""SPEC section 2 over a batch's columns: the common batch checked in numpy, not per ping.

Phones send pings of one shape: JSON numbers for `lat`, `lon` and `accuracy_m`, a `ts`
ending in `Z` with at most microseconds, perhaps `speed_mps` and `mocked`. For such a batch
the stateless checks are array comparisons, and the sequential ones (order, interval,
speed against the last accepted fix) are first tried on the assumption that every ping
passes, which is what a phone's batch does; when one does not, the ping-by-ping path takes
over from there, so a rejection's reason is always the one the sequential rule gives.

Anything else (a string where a number belongs, a `ts` with an offset or a leap second, a
year outside 1 to 9998, a batch too small for arrays to pay) returns None, and the caller
checks ping by ping. `tests/unit/test_ping_columns.py` holds the two paths equal on random
batches.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from geopush.codes import PingRejection
from geopush.geo.earth import distances_m
from geopush.geo.ping_types import FilterResult, LastFix, Ping, PingRules, sequential_reason

# Below this many pings, per-ping checks cost less than the arrays' fixed costs.
MIN_BATCH = 8

_TS = re.compile(r"(\d{4}-(?:0[1-9]|1[0-2])-\d{2}T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d"
                 r"(?:\.\d{1,6})?)Z", re.ASCII)
_NUMBERS = frozenset((float, int))
_EPOCH = np.datetime64("1970-01-01T00:00:00", "us")
_EPOCH_DT = datetime(1970, 1, 1, tzinfo=UTC)
_FIRST = np.datetime64("0001-01-01T00:00:00", "us")
_AFTER_LAST = np.datetime64("9999-01-01T00:00:00", "us")
_US = 1_000_000


def _numbers(column: list[Any]) -> NDArray[np.float64] | None:
    if not set(map(type, column)) <= _NUMBERS:
        return None  # a string, a boolean, null or absent: ping by ping
    try:
        return np.array(column, dtype=np.float64)
    except OverflowError:
        return None


def _micros(ts: list[Any]) -> NDArray[np.int64] | None:
    """Microseconds since the epoch of each `…Z` time, or None if any is of another form."""
    match = _TS.fullmatch
    texts = []
    for text in ts:
        found = match(text) if type(text) is str else None
        if found is None:
            return None
        texts.append(found[1])
    try:
        parsed = np.array(texts, dtype="datetime64[us]")
    except ValueError:
        return None  # a day the month does not have
    if bool(((parsed < _FIRST) | (parsed >= _AFTER_LAST)).any()):
        return None
    return (parsed - _EPOCH).astype(np.int64)


def filter_columns(raw: Sequence[object], last: LastFix | None, now: datetime,
                   rules: PingRules) -> FilterResult | None:
    """`filter_pings` for a batch of the common shape, else None (see the module's note)."""
    n = len(raw)
    if n < MIN_BATCH or not all(type(item) is dict for item in raw):
        return None
    items: list[dict[str, Any]] = raw  # type: ignore[assignment]  # all dicts, just checked
    lat = _numbers([item.get("lat") for item in items])
    lon = _numbers([item.get("lon") for item in items])
    acc = _numbers([item.get("accuracy_m") for item in items])
    if lat is None or lon is None or acc is None:
        return None
    speeds = [item.get("speed_mps") for item in items]
    if not set(map(type, speeds)) <= {float, int, type(None)}:
        return None
    try:
        if not all(math.isfinite(s) for s in speeds if s is not None):
            return None  # a speed that is no finite number makes its ping invalid
    except OverflowError:
        return None
    mocked = [item.get("mocked") for item in items]
    if not set(map(type, mocked)) <= {bool, type(None)}:
        return None
    ts = _micros([item.get("ts") for item in items])
    if ts is None:
        return None

    # Stateless checks, in SPEC's order: the first that fails is the reason.
    invalid = ~(np.isfinite(lat) & np.isfinite(lon) & np.isfinite(acc)
                & (lat >= -90.0) & (lat <= 90.0) & (lon >= -180.0) & (lon <= 180.0)
                & (acc >= 0.0))
    reasons: list[PingRejection | None] = [None] * n
    future = ts > _to_micros(now + timedelta(seconds=rules.future_skew_s))
    too_old = ts < _to_micros(now - timedelta(seconds=rules.max_ping_age_s))
    is_mocked = np.array([m is True for m in mocked])
    low = acc > rules.max_accuracy_m
    for mask, reason in ((low, PingRejection.LOW_ACCURACY), (is_mocked, PingRejection.MOCKED),
                         (too_old, PingRejection.TOO_OLD), (future, PingRejection.FUTURE),
                         (invalid, PingRejection.INVALID)):
        for i in np.flatnonzero(mask).tolist():
            reasons[i] = reason
    order = [i for i in np.lexsort((np.arange(n), ts)).tolist() if reasons[i] is None]

    def ping(i: int) -> Ping:
        s = speeds[i]
        return Ping(index=i, lat=float(lat[i]), lon=float(lon[i]), accuracy_m=float(acc[i]),
                    ts=_EPOCH_DT + timedelta(microseconds=int(ts[i])),
                    speed_mps=float(s) if s is not None and s >= 0 else None,
                    mocked=bool(mocked[i]))

    accepted: list[Ping] = []
    if order and not _all_pass(order, ts, lat, lon, last, rules):
        # One of them is refused: decide ping by ping from the last accepted fix on.
        for i in order:
            candidate = ping(i)
            refused = sequential_reason(candidate, last, rules)
            if refused is not None:
                reasons[i] = refused
                continue
            accepted.append(candidate)
            last = LastFix(ts=candidate.ts, lat=candidate.lat, lon=candidate.lon)
    else:
        accepted = [ping(i) for i in order]
        if accepted:
            final = accepted[-1]
            last = LastFix(ts=final.ts, lat=final.lat, lon=final.lon)
    rejected = [(i, r) for i, r in enumerate(reasons) if r is not None]
    return FilterResult(accepted=accepted, rejected=rejected, last=last)


def _all_pass(order: list[int], ts: NDArray[np.int64], lat: NDArray[np.float64],
              lon: NDArray[np.float64], last: LastFix | None, rules: PingRules) -> bool:
    """Whether every candidate, in order, passes the sequential checks after the one before
    it (the first after `last`): then all are accepted."""
    idx = np.array(order)
    t, y, x = ts[idx], lat[idx], lon[idx]
    prev_t, prev_y, prev_x = t[:-1], y[:-1], x[:-1]
    cur_t, cur_y, cur_x = t[1:], y[1:], x[1:]
    if last is not None:
        prev_t = np.concatenate(([_to_micros(last.ts)], prev_t))
        cur_t, cur_y, cur_x = t, y, x
        if last.lat is not None and last.lon is not None:
            prev_y = np.concatenate(([last.lat], prev_y))
            prev_x = np.concatenate(([last.lon], prev_x))
        else:  # the first has nothing to measure its speed from
            if not _intervals_pass(t[:1] - prev_t[:1], rules):
                return False
            prev_t, cur_t, cur_y, cur_x = prev_t[1:], t[1:], y[1:], x[1:]
    elapsed_us = cur_t - prev_t
    if not _intervals_pass(elapsed_us, rules):
        return False
    if elapsed_us.size == 0:
        return True
    elapsed = elapsed_us.astype(np.float64) / _US
    speed = distances_m(prev_x, prev_y, cur_x, cur_y) / elapsed
    return not bool((speed > rules.max_speed_mps).any())


def _intervals_pass(elapsed_us: NDArray[np.int64], rules: PingRules) -> bool:
    if not bool((elapsed_us > 0).all()):
        return False  # out of order
    return not bool((elapsed_us.astype(np.float64) / _US < rules.min_ping_interval_s).any())


def _to_micros(value: datetime) -> int:
    delta = value - _EPOCH_DT
    return (delta.days * 86_400 + delta.seconds) * _US + delta.microseconds
