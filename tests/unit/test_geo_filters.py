"""Ping filters (SPEC section 2): one test per reason, check order, sorting, index mapping."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

from geopush.codes import PingRejection as R
from geopush.geo.filters import LastFix, Ping, PingRules, filter_pings, parse_rfc3339

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
RULES = PingRules()
# 0.001° of latitude is ~111 m at these latitudes.
LAT, LON = 48.85, 2.35


def ping(seconds_before_now: float = 0, dlat: float = 0.0, **extra: object) -> dict[str, object]:
    ts = NOW - timedelta(seconds=seconds_before_now)
    return {
        "lat": LAT + dlat,
        "lon": LON,
        "accuracy_m": 10.0,
        "ts": ts.isoformat().replace("+00:00", "Z"),
        **extra,
    }


def reasons(raw: list[object], last: LastFix | None = None) -> list[tuple[int, R]]:
    return filter_pings(raw, last, NOW, RULES).rejected


# --- one test per reason -------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "not a dict",
        None,
        [1, 2],
        {"lon": LON, "accuracy_m": 5, "ts": "2024-06-01T12:00:00Z"},
        ping(lat=90.0001),
        ping(lat=-91),
        ping(lon=180.5),
        ping(lon=-181),
        ping(lat=math.nan),
        ping(lon=math.inf),
        ping(lat="48.85"),
        ping(lat=True),
        ping(accuracy_m=-1),
        ping(accuracy_m=None),
        ping(accuracy_m=math.inf),
        ping(accuracy_m=False),
        {"lat": LAT, "lon": LON, "ts": "2024-06-01T12:00:00Z"},
        {"lat": LAT, "lon": LON, "accuracy_m": 5},
        ping(ts="2024-06-01T12:00:00"),  # no offset: RFC 3339 needs one
        ping(ts="2024-06-01"),
        ping(ts="yesterday"),
        ping(ts="2024-13-01T12:00:00Z"),
        ping(ts="2024-06-01T12:00:00+24:00"),
        ping(ts=1717243200),
        ping(speed_mps="fast"),
        ping(speed_mps=math.nan),
        ping(mocked="false"),
        ping(mocked=0),
    ],
)
def test_invalid(bad: object) -> None:
    assert reasons([bad]) == [(0, R.INVALID)]


def test_future_beyond_the_skew_only() -> None:
    assert reasons([ping(-60)]) == []
    assert reasons([ping(-60.001)]) == [(0, R.FUTURE)]


def test_too_old_beyond_max_age_only() -> None:
    assert reasons([ping(86_400)]) == []
    assert reasons([ping(86_400.001)]) == [(0, R.TOO_OLD)]


def test_mocked() -> None:
    assert reasons([ping(mocked=True)]) == [(0, R.MOCKED)]
    assert reasons([ping(mocked=False), ping(-1, mocked=None)]) == []


def test_low_accuracy_above_the_limit_only() -> None:
    assert reasons([ping(accuracy_m=150)]) == []
    assert reasons([ping(accuracy_m=150.01)]) == [(0, R.LOW_ACCURACY)]


def test_out_of_order_against_the_last_accepted_ping() -> None:
    last = LastFix(ts=NOW - timedelta(seconds=10), lat=LAT, lon=LON)
    assert reasons([ping(10)], last) == [(0, R.OUT_OF_ORDER)]  # a duplicate is ignored
    assert reasons([ping(20)], last) == [(0, R.OUT_OF_ORDER)]
    assert reasons([ping(9)], last) == []


def test_equal_ts_in_one_batch_keeps_the_first_by_index() -> None:
    result = filter_pings([ping(5, dlat=0.0001), ping(5)], None, NOW, RULES)
    assert [p.index for p in result.accepted] == [0]
    assert result.rejected == [(1, R.OUT_OF_ORDER)]


def test_implausible_speed_against_the_last_accepted_ping() -> None:
    last = LastFix(ts=NOW - timedelta(seconds=10), lat=LAT, lon=LON)
    # 0.006° of latitude is ~667 m: 66.7 m/s over 10 s is fine; 0.0065° (~723 m) is not.
    assert reasons([ping(0, dlat=0.006)], last) == []
    assert reasons([ping(0, dlat=0.0065)], last) == [(0, R.IMPLAUSIBLE_SPEED)]


def test_a_rejected_ping_does_not_move_the_last_fix() -> None:
    # 1: a glitch 10 km away (implausible); 2 is compared with 0, not with the glitch.
    raw = [ping(20), ping(10, dlat=0.1), ping(0, dlat=0.001)]
    result = filter_pings(raw, None, NOW, RULES)
    assert result.rejected == [(1, R.IMPLAUSIBLE_SPEED)]
    assert [p.index for p in result.accepted] == [0, 2]
    assert result.last == LastFix(ts=NOW, lat=LAT + 0.001, lon=LON)


def test_a_rejected_batch_keeps_the_previous_last_fix() -> None:
    last = LastFix(ts=NOW - timedelta(seconds=100), lat=LAT, lon=LON)
    result = filter_pings([ping(mocked=True), "junk"], last, NOW, RULES)
    assert result.accepted == [] and result.last == last


# --- order of checks -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (ping(-3600, lat=95), R.INVALID),  # invalid before future
        (ping(-3600, mocked=True), R.FUTURE),  # future before mocked
        (ping(90_000, accuracy_m=500), R.TOO_OLD),  # too_old before low_accuracy
        (ping(0, mocked=True, accuracy_m=500), R.MOCKED),  # mocked before low_accuracy
        (ping(30, accuracy_m=500), R.LOW_ACCURACY),  # low_accuracy before out_of_order
        (ping(30, dlat=1.0), R.OUT_OF_ORDER),  # out_of_order before implausible_speed
    ],
)
def test_first_failing_check_wins(raw: dict[str, object], reason: R) -> None:
    last = LastFix(ts=NOW - timedelta(seconds=20), lat=LAT, lon=LON)
    assert reasons([raw], last) == [(0, reason)]


# --- sorting and index mapping -------------------------------------------------------------


def test_batch_is_sorted_by_ts_and_indexes_refer_to_the_request() -> None:
    raw = [ping(10), "junk", ping(30), ping(20, mocked=True), ping(20), ping(0)]
    result = filter_pings(raw, None, NOW, RULES)
    assert [p.index for p in result.accepted] == [2, 4, 0, 5]
    assert [p.ts for p in result.accepted] == sorted(p.ts for p in result.accepted)
    assert result.rejected == [(1, R.INVALID), (3, R.MOCKED)]
    assert result.last == LastFix(ts=NOW, lat=LAT, lon=LON)


def test_out_of_order_and_speed_are_decided_after_sorting() -> None:
    # Sent newest first: sorted, they form a plausible track; nothing is out of order.
    raw = [ping(0, dlat=0.002), ping(10, dlat=0.001), ping(20)]
    result = filter_pings(raw, None, NOW, RULES)
    assert result.rejected == []
    assert [p.index for p in result.accepted] == [2, 1, 0]


def test_accepted_ping_fields() -> None:
    raw = [
        {
            "lat": 1,
            "lon": -2,
            "accuracy_m": 0,
            "ts": "2024-06-01T13:59:59.5+02:00",
            "speed_mps": 3,
            "mocked": False,
            "extra": "ignored",
        }
    ]
    (accepted,) = filter_pings(raw, None, NOW, RULES).accepted
    assert accepted == Ping(
        index=0,
        lat=1.0,
        lon=-2.0,
        accuracy_m=0.0,
        ts=datetime(2024, 6, 1, 11, 59, 59, 500_000, tzinfo=UTC),
        speed_mps=3.0,
        mocked=False,
    )
    assert accepted.ts.tzinfo is UTC


def test_negative_speed_is_unknown_not_invalid() -> None:
    # iOS reports -1 when it has no speed.
    (accepted,) = filter_pings([ping(speed_mps=-1)], None, NOW, RULES).accepted
    assert accepted.speed_mps is None


def test_rules_are_configurable() -> None:
    rules = PingRules(future_skew_s=0, max_ping_age_s=10, max_accuracy_m=5, max_speed_mps=1)
    raw = [ping(-1), ping(11), ping(5, accuracy_m=6), ping(8, accuracy_m=5), ping(0, dlat=0.001)]
    result = filter_pings(raw, None, NOW, rules)
    assert result.rejected == [
        (0, R.FUTURE),
        (1, R.TOO_OLD),
        (2, R.LOW_ACCURACY),
        (4, R.LOW_ACCURACY),
    ]
    result = filter_pings(
        [ping(8, accuracy_m=5), ping(0, dlat=0.0001, accuracy_m=5)], None, NOW, rules
    )
    assert result.rejected == [(1, R.IMPLAUSIBLE_SPEED)]  # 11 m in 8 s


def test_now_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        filter_pings([], None, datetime(2024, 1, 1), RULES)


# --- RFC 3339 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-06-01T12:00:00Z", datetime(2024, 6, 1, 12, tzinfo=UTC)),
        ("2024-06-01t12:00:00z", datetime(2024, 6, 1, 12, tzinfo=UTC)),
        ("2024-06-01 12:00:00+00:00", datetime(2024, 6, 1, 12, tzinfo=UTC)),
        ("2024-06-01T14:00:00+02:00", datetime(2024, 6, 1, 12, tzinfo=UTC)),
        ("2024-06-01T07:30:00-04:30", datetime(2024, 6, 1, 12, tzinfo=UTC)),
        ("2024-06-01T12:00:00-00:00", datetime(2024, 6, 1, 12, tzinfo=UTC)),
        ("2024-06-01T12:00:00.123456789Z", datetime(2024, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)),
        ("2024-06-01T12:00:00.5Z", datetime(2024, 6, 1, 12, 0, 0, 500000, tzinfo=UTC)),
        ("2016-12-31T23:59:60Z", datetime(2017, 1, 1, tzinfo=UTC)),  # leap second
        ("2024-06-01T12:00:00", None),
        ("2024-06-01T12:00Z", None),
        ("2024-06-01T12:00:00.Z", None),
        ("20240601T120000Z", None),
        ("2024-06-01T12:00:00+0200", None),
        ("2024-02-30T12:00:00Z", None),
        ("2024-06-01T12:00:00Z\n", None),
        ("２０２４-06-01T12:00:00Z", None),  # non-ASCII digits
        ("0000-01-01T00:00:00Z", None),
        ("0001-01-01T00:00:00+01:00", None),  # before datetime.min in UTC
    ],
)
def test_parse_rfc3339(text: str, expected: datetime | None) -> None:
    assert parse_rfc3339(text) == expected


def test_offsets_compare_as_instants() -> None:
    # 13:00+02:00 is 11:00Z: before a last fix at 11:30Z, so out of order.
    last = LastFix(ts=datetime(2024, 6, 1, 11, 30, tzinfo=UTC), lat=LAT, lon=LON)
    raw = [ping(ts="2024-06-01T13:00:00+02:00")]
    assert reasons(raw, last) == [(0, R.OUT_OF_ORDER)]
    assert parse_rfc3339("2024-06-01T13:00:00+02:00") == datetime(
        2024, 6, 1, 13, tzinfo=timezone(timedelta(hours=2))
    )


def test_the_documented_ping_schema_is_the_one_parse_ping_checks():
    from geopush.geo.filters import PING_SCHEMA, parse_ping

    props: dict = PING_SCHEMA["properties"]  # type: ignore[assignment]
    good = {"lat": 0.0, "lon": 0.0, "accuracy_m": 5.0, "ts": "2026-01-01T00:00:00Z"}
    assert parse_ping(0, good) is not None
    for key in PING_SCHEMA["required"]:  # type: ignore[attr-defined]
        assert parse_ping(0, {k: v for k, v in good.items() if k != key}) is None, key
    for key in ("lat", "lon"):
        low, high = props[key]["minimum"], props[key]["maximum"]
        assert parse_ping(0, {**good, key: low}) and parse_ping(0, {**good, key: high})
        assert parse_ping(0, {**good, key: low - 1e-9}) is None
        assert parse_ping(0, {**good, key: high + 1e-9}) is None
    assert parse_ping(0, {**good, "accuracy_m": props["accuracy_m"]["minimum"] - 1}) is None
