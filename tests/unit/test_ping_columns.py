"""The batch path checked as columns (geo/ping_columns.py) answers exactly as the checks
ping by ping (geo/filters.filter_each): accepted pings with every field, rejections with
their reasons, and the last fix after, on random batches of phones' shape and of every odd
shape a client can send."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from geopush.geo.filters import LastFix, PingRules, filter_each, filter_pings
from geopush.geo.ping_columns import MIN_BATCH, filter_columns

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
BASE = (39.9, 116.4)

# What a client can put where a number belongs, besides good numbers.
ODD_NUMBERS = st.sampled_from([None, "39.9", True, False, math.nan, math.inf, -math.inf,
                               10**400, -1, 1e308, 200.0, -200.0, 95.0])
ODD_TIMES = st.sampled_from([
    "2026-12-03T09:59:00+01:00", "2026-12-03t09:59:00z", "2026-12-03T09:59:60Z",
    "2026-02-30T09:59:00Z", "2026-12-03T09:59:00.1234567Z", "0000-12-03T09:59:00Z",
    "9999-12-03T09:59:00Z", "2026-12-03 09:59:00Z", "not a time", "", None, 5,
    "2026-12-03T24:00:00Z", "2026-13-03T09:00:00Z"])


def _stamp(at: datetime, digits: int) -> str:
    text = at.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += "." + f"{at.microsecond:06d}"[:digits]
    return text + "Z"


@st.composite
def pings(draw: Any, odd_share: int = 6) -> dict[str, Any]:
    offset_s = draw(st.one_of(
        st.floats(-700, 700, allow_nan=False),  # around the batch: order, interval, speed
        st.sampled_from([-86_401.0, -86_399.0, 59.0, 61.0, 3600.0])))  # too old, future
    at = NOW - timedelta(seconds=600) + timedelta(seconds=offset_s)
    ping: dict[str, Any] = {
        "lat": BASE[0] + draw(st.floats(-0.01, 0.01)),
        "lon": BASE[1] + draw(st.floats(-0.01, 0.01)),
        "accuracy_m": draw(st.sampled_from([5.0, 10, 149.9, 150.0, 150.5, 0.0, -0.0])),
        "ts": _stamp(at, draw(st.sampled_from([0, 3, 6]))),
    }
    if draw(st.booleans()):
        ping["speed_mps"] = draw(st.sampled_from([None, 1.5, -1.0, 0, 3]))
    if draw(st.booleans()):
        ping["mocked"] = draw(st.sampled_from([None, False, True]))
    # Now and then, something odd in one field, or a field missing, or an extra one.
    odd = draw(st.integers(1, odd_share))
    if odd == 1:
        ping[draw(st.sampled_from(["lat", "lon", "accuracy_m"]))] = draw(ODD_NUMBERS)
    elif odd == 2:
        ping["ts"] = draw(ODD_TIMES)
    elif odd == 3:
        del ping[draw(st.sampled_from(["lat", "lon", "accuracy_m", "ts"]))]
    elif odd == 4:
        ping["speed_mps"] = draw(st.sampled_from(["fast", True, math.nan, 10**400]))
    elif odd == 5:
        ping["mocked"] = draw(st.sampled_from([1, "true", 0]))
    elif odd == 6:
        ping["floor"] = [1, {"a": 2}]
    elif odd == 7:  # still numbers, so still columns: out of range, not finite
        ping[draw(st.sampled_from(["lat", "lon", "accuracy_m"]))] = draw(st.sampled_from(
            [math.nan, math.inf, 200.0, -95.0, -1.0, 1e308]))
    return ping


# A phone's batch: pings only, mostly well formed, enough of them for arrays.
PHONE_BATCHES = st.lists(pings(odd_share=60), min_size=MIN_BATCH, max_size=60)


@st.composite
def walks(draw: Any) -> list[dict[str, Any]]:
    """A phone walking: times in order, a few metres a step; now and then a step too soon
    or too far for the rules drawn."""
    n = draw(st.integers(MIN_BATCH, 60))
    at = NOW - timedelta(seconds=draw(st.floats(200, 3000)))
    lat, out = BASE[0], []
    for _ in range(n):
        at += timedelta(seconds=draw(st.sampled_from([2.0, 5.0, 3.0, 2.0, 0.5, 0.001])))
        lat += draw(st.sampled_from([0.0, 1e-5, 5e-5, 1e-3]))
        out.append({"lat": lat, "lon": BASE[1], "accuracy_m": 10.0,
                    "ts": _stamp(at, draw(st.sampled_from([0, 3, 6])))})
    return out


# Anything: pings of every odd shape, and items that are no ping at all.
BATCHES = st.lists(st.one_of(pings(), st.sampled_from([None, [], "ping", 3])),
                   min_size=0, max_size=40)
LASTS = st.one_of(
    st.none(),
    st.builds(lambda s, pos: LastFix(ts=NOW - timedelta(seconds=s),
                                     lat=BASE[0] if pos else None,
                                     lon=BASE[1] if pos else None),
              st.floats(0, 2000, allow_nan=False), st.booleans()))
RULES = st.builds(PingRules, future_skew_s=st.sampled_from([60, 0.5, 3600]),
                  max_ping_age_s=st.sampled_from([86_400, 300]),
                  max_accuracy_m=st.sampled_from([150, 20]),
                  max_speed_mps=st.sampled_from([70, 2, 0.5]),
                  min_ping_interval_s=st.sampled_from([1.0, 0, 30]))


@settings(max_examples=600, deadline=None)
@given(batch=st.one_of(walks(), PHONE_BATCHES, BATCHES), last=LASTS, rules=RULES)
def test_columns_answer_as_the_checks_ping_by_ping(
        batch: list[Any], last: LastFix | None, rules: PingRules) -> None:
    assert filter_pings(batch, last, NOW, rules) == filter_each(batch, last, NOW, rules)


def test_a_phones_batch_takes_the_column_path() -> None:
    """The property above means something only if phones' batches do take it."""
    batch = [{"lat": BASE[0] + i * 1e-4, "lon": BASE[1], "accuracy_m": 8,
              "ts": _stamp(NOW - timedelta(seconds=300 - 5 * i), 3)}
             for i in range(MIN_BATCH * 2)]
    fast = filter_columns(batch, None, NOW, PingRules())
    assert fast is not None and len(fast.accepted) == len(batch)
    assert fast == filter_each(batch, None, NOW, PingRules())
    # An offset, not Z: ping by ping.
    odd = [*batch[:-1], {**batch[-1], "ts": "2026-12-03T10:55:00+01:00"}]
    assert filter_columns(odd, None, NOW, PingRules()) is None
