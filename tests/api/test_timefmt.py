"""One RFC 3339 reader and one writer: every timestamp an answer carries ends in `Z`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from geopush.timefmt import format_ts, format_ts_or_none, parse_rfc3339
from tests.api_client import Api, walk
from tests.conftest import unique_token

# A date-time in an answer: anything shaped like one must be in the one format.
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z")


def test_format_is_utc_with_z() -> None:
    beijing = timezone(timedelta(hours=8))
    assert format_ts(datetime(2025, 5, 1, 17, 0, tzinfo=beijing)) == "2025-05-01T09:00:00Z"
    assert format_ts(datetime(2025, 5, 1, 9, 0, 0, 250, tzinfo=UTC)) == (
        "2025-05-01T09:00:00.000250Z")
    assert format_ts(datetime(2025, 5, 1, 9, 0)) == "2025-05-01T09:00:00Z"  # naive is UTC
    assert format_ts_or_none(None) is None


def test_parse_then_format_round_trips() -> None:
    for text in ("2025-05-01T09:00:00Z", "2025-05-01T09:00:00.123456Z"):
        parsed = parse_rfc3339(text)
        assert parsed is not None and format_ts(parsed) == text
    assert parse_rfc3339("2025-05-01T11:00:00+02:00") == datetime(2025, 5, 1, 9, tzinfo=UTC)
    for bad in ("2025-05-01T09:00:00", "2025-05-01", "20250501T090000Z", "9999-12-31T23:59:59Z"):
        assert parse_rfc3339(bad) is None, bad


def _timestamps(value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every (path, string) in a JSON answer that looks like a date-time."""
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in _timestamps(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [t for i, v in enumerate(value) for t in _timestamps(v, f"{path}[{i}]")]
    if isinstance(value, str) and _TIMESTAMP.match(value):
        return [(path, value)]
    return []


async def test_every_timestamp_in_answers_ends_in_z(api: Api) -> None:
    store = await api.store()
    fence = await api.circle(39.9, 116.4, 100, store_id=store["id"])
    offer = await api.offer(geofence_ids=[fence["id"]],
                            starts_at="2025-05-01T11:00:00+02:00")
    edited = (await api.as_role("marketer", "PATCH", f"/v1/offers/{offer['id']}",
                                json={"priority": 3})).ok(200)
    dev = await api.device(unique_token())
    pings = (await api.pings(dev, walk(39.9, 116.4, -400, 0, 5,
                                       datetime.now(UTC) - timedelta(minutes=1)))).ok(202)
    answers = {
        "store": store, "geofence": fence, "offer": offer, "edited offer": edited,
        "pings": pings,
        "stores": (await api.as_role("marketer", "GET", "/v1/stores")).ok(200),
        "offers": (await api.as_role("marketer", "GET", "/v1/offers")).ok(200),
        "deliveries": (await api.as_role("ops", "GET", "/v1/deliveries")).ok(200),
        "keys": (await api.call("GET", "/v1/keys", key=api.admin_key)).ok(200),
        "device": (await api.call("GET", "/v1/devices/me", key=dev.token)).ok(200),
    }
    found = [(name, path, text) for name, body in answers.items()
             for path, text in _timestamps(body)]
    assert {name for name, _, _ in found} >= {"store", "geofence", "offer", "edited offer",
                                              "pings", "deliveries", "keys", "device"}
    wrong = [f for f in found if not _FORMAT.fullmatch(f[2])]
    assert not wrong
    assert edited["starts_at"] == "2025-05-01T09:00:00Z"
    assert edited["updated_at"].endswith("Z") and edited["created_at"].endswith("Z")
