"""The common batch's one-statement path: what it acknowledges is committed, its answers
and refusals are the full path's, and a batch it cannot judge alone takes the full path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from geopush.api.runtime import RUNTIME
from geopush.errors import Forbidden, Unauthorized
from geopush.ingest.pipeline import common_batch, prejudge, process_batch
from tests.api_client import Api, Device, iso, offset_m
from tests.conftest import RunningServer, unique_token

LAT, LON = 45.50, -73.57
FAR_LAT, FAR_LON = 45.70, -73.30  # about 30 km from the fence the tests draw


def ping(ts: datetime, lat: float = FAR_LAT, lon: float = FAR_LON, **extra: Any) -> dict:
    return {"lat": lat, "lon": lon, "accuracy_m": 10, "ts": iso(ts), **extra}


async def fast(server: RunningServer, device: Device, pings: list[dict],
               batch_id: str | None = None) -> Any:
    """`common_batch` alone, on the server's own pool and index: its answer, or None."""
    rt = server.app[RUNTIME]
    pre = prejudge(rt.fences, rt.config, pings, datetime.now(UTC))
    if not pre.common:
        return None
    async with rt.pool.acquire() as conn:
        result = await common_batch(conn, rt.config, UUID(device.device_id), batch_id, pre)
    return None if result is None else result.response


async def full(server: RunningServer, device: Device, pings: list[dict]) -> dict:
    rt = server.app[RUNTIME]
    async with rt.pool.acquire() as conn, conn.transaction():
        result = await process_batch(conn, rt.fences, rt.config, UUID(device.device_id),
                                     pings, None, datetime.now(UTC))
    return result.response


async def stored(db: Any, device: Device) -> list[tuple[Any, ...]]:
    rows = await db.fetch("SELECT ts, lat, lon FROM pings WHERE device_id = $1 ORDER BY ts",
                          UUID(device.device_id))
    last = await db.fetchrow("SELECT last_ping_ts, last_lat, last_lon FROM devices "
                             "WHERE device_id = $1", UUID(device.device_id))
    return [tuple(r) for r in rows] + [tuple(last)]


async def test_an_acknowledged_common_batch_is_committed(server: RunningServer, api: Api,
                                                         db: Any) -> None:
    await api.circle(LAT, LON, 100)
    dev = await api.device(unique_token())
    now = datetime.now(UTC)
    answer = await fast(server, dev, [ping(now - timedelta(seconds=20)),
                                      ping(now - timedelta(seconds=10), FAR_LAT + 0.0001)])
    assert answer == {"accepted": 2, "rejected": [], "events": []}
    # Read on another connection: committed, with the last fix moved to the later ping.
    rows = await stored(db, dev)
    assert len(rows) == 3
    assert rows[-1][1] == pytest.approx(FAR_LAT + 0.0001)
    over_http = (await api.call("POST", "/v1/pings", key=dev.token,
                                json={"pings": [ping(now - timedelta(seconds=5))]})).ok(202)
    assert over_http == {"accepted": 1, "rejected": [], "events": []}
    assert await db.fetchval("SELECT count(*) FROM pings") == 3


def _scenarios(now: datetime, lat: float, lon: float
               ) -> dict[str, tuple[list[dict], list[dict]]]:
    """(first batch, second batch): the second is judged against the first's last fix."""
    t = now - timedelta(seconds=300)
    far_north = offset_m(lat, lon, 10_000, 0)
    just_under = offset_m(lat, lon, 69.8 * 10, 0)  # 69.8 m/s over 10 s: accepted

    def ping(ts: datetime, a: float = lat, b: float = lon, **extra: Any) -> dict:
        return {"lat": a, "lon": b, "accuracy_m": 10, "ts": iso(ts), **extra}

    return {
        "out_of_order": ([ping(t)], [ping(t - timedelta(seconds=5)), ping(t),
                                     ping(t + timedelta(seconds=5))]),
        "implausible_speed": ([ping(t)], [ping(t + timedelta(seconds=10), *far_north),
                                          ping(t + timedelta(seconds=20))]),
        "speed_near_the_limit": ([ping(t)], [ping(t + timedelta(seconds=10), *just_under)]),
        "mixed_rejections": ([ping(t)], [ping(t + timedelta(seconds=10), mocked=True),
                                         {"lat": "x"}, ping(t + timedelta(seconds=20)),
                                         ping(now + timedelta(hours=1))]),
        "all_refused_alone": ([ping(t)], [ping(t, accuracy_m=500)]),
        "too_frequent": ([ping(t)], [ping(t + timedelta(milliseconds=500)),
                                     ping(t + timedelta(seconds=5))]),
    }


@pytest.mark.parametrize("where", ["far", "in_fence"])
@pytest.mark.parametrize("name", ["out_of_order", "implausible_speed", "speed_near_the_limit",
                                  "mixed_rejections", "all_refused_alone", "too_frequent"])
async def test_answers_and_rows_are_the_full_paths(server: RunningServer, api: Api, db: Any,
                                                   name: str, where: str) -> None:
    """Far from fences the common batch answers; in a fence the full path reuses what was
    judged before the round trip. Either way: the full path's answers and rows."""
    await api.circle(LAT, LON, 100)
    at = (FAR_LAT, FAR_LON) if where == "far" else (LAT, LON)
    first, second = _scenarios(datetime.now(UTC), *at)[name]
    by_http, by_full = await api.device(unique_token()), await api.device(unique_token())
    answers_http = [(await api.call("POST", "/v1/pings", key=by_http.token,
                                    json={"pings": batch})).ok(202)
                    for batch in (first, second)]
    answers_full = [await full(server, by_full, batch) for batch in (first, second)]
    assert answers_http == answers_full
    assert await stored(db, by_http) == await stored(db, by_full)


async def test_refusals_are_the_full_paths(server: RunningServer, api: Api, db: Any) -> None:
    no_consent = await api.device(unique_token(), location=False)
    batch = [ping(datetime.now(UTC))]
    with pytest.raises(Forbidden) as fast_refusal:
        await fast(server, no_consent, batch)
    with pytest.raises(Forbidden) as full_refusal:
        await full(server, no_consent, batch)
    assert (fast_refusal.value.code, str(fast_refusal.value)) == (
        full_refusal.value.code, str(full_refusal.value))
    gone = Device(device_id=str(UUID(int=7)), token="none", fcm_token="none")
    with pytest.raises(Unauthorized):
        await fast(server, gone, batch)
    assert await db.fetchval("SELECT count(*) FROM pings") == 0


async def test_a_repeated_batch_id_gets_the_first_answer(server: RunningServer, api: Api,
                                                         db: Any) -> None:
    dev = await api.device(unique_token())
    now = datetime.now(UTC)
    body = {"pings": [ping(now - timedelta(seconds=9)), ping(now, mocked=True)],
            "batch_id": "b-1"}
    first = (await api.call("POST", "/v1/pings", key=dev.token, json=body)).ok(202)
    assert first["accepted"] == 1
    again = (await api.call("POST", "/v1/pings", key=dev.token, json=body)).ok(202)
    assert again == first
    assert await fast(server, dev, body["pings"], "b-1") == first
    assert await db.fetchval("SELECT count(*) FROM pings") == 1


async def test_a_batch_near_a_fence_takes_the_full_path(server: RunningServer,
                                                        api: Api) -> None:
    await api.circle(LAT, LON, 100)
    dev = await api.device(unique_token())
    now = datetime.now(UTC)
    near = offset_m(LAT, LON, 110, 0)  # outside, within the exit buffer
    assert await fast(server, dev, [ping(now - timedelta(seconds=30), *near)]) is None
    inside = (await api.call("POST", "/v1/pings", key=dev.token,
                             json={"pings": [ping(now - timedelta(seconds=20), LAT, LON)]}
                             )).ok(202)
    assert [e["type"] for e in inside["events"]] == ["enter"]


async def test_an_open_visit_takes_the_full_path_and_exits(server: RunningServer, api: Api,
                                                           db: Any) -> None:
    await api.circle(LAT, LON, 100)
    dev = await api.device(unique_token())
    now = datetime.now(UTC)
    (await api.call("POST", "/v1/pings", key=dev.token,
                    json={"pings": [ping(now - timedelta(seconds=600), LAT, LON)]})).ok(202)
    away = offset_m(LAT, LON, 1_000, 0)  # far from the fence, slow enough
    assert await fast(server, dev, [ping(now - timedelta(seconds=300), *away)]) is None
    assert await db.fetchval("SELECT count(*) FROM pings") == 1  # 'full' wrote nothing
    left = (await api.call("POST", "/v1/pings", key=dev.token,
                           json={"pings": [ping(now - timedelta(seconds=300), *away)]})).ok(202)
    assert [e["type"] for e in left["events"]] == ["exit"]
