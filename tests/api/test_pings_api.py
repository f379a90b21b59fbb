"""`POST /v1/pings` as an app sees it: filters, ordering, idempotency, consent, limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from tests.api_client import Api, iso, offset_m, walk
from tests.conftest import unique_token
from tests.eventually import eventually

LAT, LON = 45.50, -73.57


def ping(ts: datetime, lat: float = LAT, lon: float = LON, **extra: object) -> dict:
    return {"lat": lat, "lon": lon, "accuracy_m": 10, "ts": iso(ts), **extra}


async def post(api: Api, device, pings: list, **body: object):
    return await api.call("POST", "/v1/pings", key=device.token, json={"pings": pings, **body})


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"lat": 91.0}, "invalid"),
        ({"lon": -180.5}, "invalid"),
        ({"accuracy_m": -1}, "invalid"),
        ({"accuracy_m": None}, "invalid"),
        ({"ts": "yesterday"}, "invalid"),
        ({"lat": "45.5"}, "invalid"),
        ({"ts_offset_s": 3600}, "future"),
        ({"ts_offset_s": -86400 - 60}, "too_old"),
        ({"mocked": True}, "mocked"),
        ({"accuracy_m": 151}, "low_accuracy"),
    ],
)
async def test_each_filter_reason(api: Api, bad: dict, reason: str) -> None:
    dev = await api.device(unique_token())
    now = datetime.now(UTC)
    bad = dict(bad)
    offset = bad.pop("ts_offset_s", 0)
    good = ping(now - timedelta(seconds=30))
    wrong = {**ping(now - timedelta(seconds=20) + timedelta(seconds=offset)), **bad}
    if "accuracy_m" in bad and bad["accuracy_m"] is None:
        del wrong["accuracy_m"]
    reply = (await post(api, dev, [wrong, good])).ok(202)
    assert reply["accepted"] == 1
    assert reply["rejected"] == [{"index": 0, "reason": reason}]


async def test_out_of_order_and_duplicates_compare_with_last_accepted(api: Api) -> None:
    dev = await api.device(unique_token())
    now = datetime.now(UTC)
    (await post(api, dev, [ping(now - timedelta(seconds=60))])).ok(202)
    reply = (await post(api, dev, [ping(now - timedelta(seconds=60)),
                                   ping(now - timedelta(seconds=90)),
                                   ping(now - timedelta(seconds=30))])).ok(202)
    assert reply["accepted"] == 1
    assert reply["rejected"] == [{"index": 0, "reason": "out_of_order"},
                                 {"index": 1, "reason": "out_of_order"}]


async def test_implausible_speed_and_sorting_by_ts(api: Api) -> None:
    dev = await api.device(unique_token())
    now = datetime.now(UTC)
    far_lat, far_lon = offset_m(LAT, LON, 2000, 0)  # 2 km in 10 s: 200 m/s
    pings = [
        ping(now - timedelta(seconds=40), far_lat, far_lon),  # index 0, sorted 2nd
        ping(now - timedelta(seconds=50)),                    # index 1, sorted 1st
        ping(now - timedelta(seconds=10)),                    # index 2, fine (same spot)
    ]
    reply = (await post(api, dev, pings)).ok(202)
    assert reply["accepted"] == 2
    assert reply["rejected"] == [{"index": 0, "reason": "implausible_speed"}]


async def test_first_failing_check_is_the_reason(api: Api) -> None:
    dev = await api.device(unique_token())
    now = datetime.now(UTC)
    both = ping(now + timedelta(hours=1), mocked=True, accuracy_m=500)
    reply = (await post(api, dev, [both])).ok(202)
    assert reply["rejected"] == [{"index": 0, "reason": "future"}]


async def test_without_location_consent_403_and_nothing_stored(api: Api, db) -> None:
    dev = await api.device(unique_token(), location=False, push=True)
    reply = await post(api, dev, [ping(datetime.now(UTC))])
    assert reply.status == 403
    assert reply.body["error"]["code"] == "no_location_consent"
    assert await db.fetchval("SELECT count(*) FROM pings") == 0
    assert await db.fetchval("SELECT last_ping_ts FROM devices") is None


async def test_consent_starts_off(api: Api) -> None:
    reg = (await api.as_role("app", "POST", "/v1/devices",
                             json={"fcm_token": unique_token(), "platform": "ios",
                                   "locale": "en", "timezone": "UTC"})).ok(201)
    me = (await api.call("GET", "/v1/devices/me", key=reg["device_token"])).ok(200)
    assert me["consent"] == {"location": False, "push": False, "categories": None,
                             "leaderboard": False, "recognition": False}
    reply = await api.call("POST", "/v1/pings", key=reg["device_token"],
                           json={"pings": [ping(datetime.now(UTC))]})
    assert reply.status == 403


async def test_repeated_batch_id_returns_first_answer_and_changes_nothing(api: Api, db
                                                                          ) -> None:
    await api.circle(LAT, LON, 100)
    dev = await api.device(unique_token())
    path = walk(LAT, LON, -300, 0, 4, datetime.now(UTC) - timedelta(minutes=1), every_s=5)
    body = [{"lat": a, "lon": b, "accuracy_m": 5, "ts": iso(t)} for a, b, t in path]
    first = (await post(api, dev, body, batch_id="b-1")).ok(202)
    assert [e["type"] for e in first["events"]] == ["enter"]
    again = (await post(api, dev, body, batch_id="b-1")).ok(202)
    assert again == first
    assert await db.fetchval("SELECT count(*) FROM events") == 1
    assert await db.fetchval("SELECT count(*) FROM pings") == 4
    # Without the batch_id the same pings are duplicates: out_of_order, no new event.
    third = (await post(api, dev, body)).ok(202)
    assert third["accepted"] == 0 and third["events"] == []


async def test_invalid_batches_leave_no_answer_behind(api: Api, db) -> None:
    """A batch that changes nothing keeps nothing: fresh batch_ids on junk cannot grow
    `ping_batches`, and the same batch sent again is judged again, to the same answer."""
    dev = await api.device(unique_token())
    junk = [{"lat": LAT, "lon": LON, "accuracy_m": 5000, "ts": iso(datetime.now(UTC))}]
    answers = [(await post(api, dev, junk, batch_id=f"junk-{i}")).ok(202) for i in range(20)]
    assert all(a["accepted"] == 0 and a["rejected"][0]["reason"] == "low_accuracy"
               for a in answers)
    assert answers[0] == (await post(api, dev, junk, batch_id="junk-0")).ok(202)
    assert await db.fetchval("SELECT count(*) FROM ping_batches") == 0


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("not json", 400),
        ([], 400),
        ({"pings": "many"}, 400),
        ({"pings": [], "batch_id": 7}, 400),
    ],
)
async def test_malformed_bodies_are_4xx_json(api: Api, body: object, status: int) -> None:
    dev = await api.device(unique_token())
    if isinstance(body, str):
        reply = await api.call("POST", "/v1/pings", key=dev.token, data=body,
                               headers={"Content-Type": "application/json"})
    else:
        reply = await api.call("POST", "/v1/pings", key=dev.token, json=body)
    assert reply.status == status
    assert set(reply.body["error"]) == {"code", "message", "details"}


async def test_more_than_500_pings_is_413(api: Api) -> None:
    dev = await api.device(unique_token())
    now = datetime.now(UTC)
    reply = await post(api, dev, [ping(now - timedelta(seconds=i)) for i in range(501)])
    assert reply.status == 413


async def test_body_over_max_body_bytes_is_413(start_server) -> None:
    server = await start_server(limits={"max_body_bytes": 4096})
    from tests.conftest import ADMIN_KEY

    async with Api(server.url, ADMIN_KEY) as api:
        dev = await api.device(unique_token())
        now = datetime.now(UTC)
        reply = await post(api, dev, [ping(now - timedelta(seconds=i)) for i in range(200)])
        assert reply.status == 413
        assert reply.body["error"]["code"] == "too_large"


async def test_per_device_rate_limit_429_with_retry_after(start_server) -> None:
    server = await start_server(limits={"device_rate_per_s": 1})
    from tests.conftest import ADMIN_KEY

    async with Api(server.url, ADMIN_KEY) as api:
        dev = await api.device(unique_token())
        replies = [await post(api, dev, []) for _ in range(6)]
        statuses = [r.status for r in replies]
        assert 429 in statuses and statuses[0] == 202
        limited = next(r for r in replies if r.status == 429)
        assert int(limited.headers["Retry-After"]) >= 1
        other = await api.device(unique_token())  # another device is not limited
        assert (await post(api, other, [])).status == 202


async def test_bad_device_token_401(api: Api) -> None:
    reply = await api.call("POST", "/v1/pings", key="gpd_nope", json={"pings": []})
    assert reply.status == 401 and reply.body["error"]["code"] == "unauthorized"


async def test_dwell_from_sweeper_when_phone_stops_sending(start_server, db) -> None:
    server = await start_server(geo={"sweep_interval_s": 0.1})
    from tests.conftest import ADMIN_KEY

    async with Api(server.url, ADMIN_KEY) as api:
        fence = await api.circle(LAT, LON, 100, dwell_s=2)
        dev = await api.device(unique_token())
        now = datetime.now(UTC)
        reply = (await post(api, dev, [ping(now - timedelta(seconds=1))])).ok(202)
        assert [e["type"] for e in reply["events"]] == ["enter"]
        async def enter_and_dwell() -> list | None:
            rows = await db.fetch("SELECT type, source FROM events WHERE geofence_id = $1"
                                  " ORDER BY ts", fence["id"])
            return rows if len(rows) == 2 else None

        rows = await eventually(enter_and_dwell)
        assert [(r["type"], r["source"]) for r in rows] == [("enter", "ping"),
                                                            ("dwell", "sweeper")]
        # A later ping inside fires no second dwell.
        reply = (await post(api, dev, [ping(datetime.now(UTC))])).ok(202)
        assert reply["events"] == []


async def test_no_sweeper_dwell_for_a_device_silent_past_the_visit_timeout(start_server,
                                                                           db) -> None:
    server = await start_server(geo={"sweep_interval_s": 0.1, "visit_timeout_s": 60})
    from tests.conftest import ADMIN_KEY

    async with Api(server.url, ADMIN_KEY) as api:
        await api.circle(LAT, LON, 100, dwell_s=90)
        dev = await api.device(unique_token())
        # Entered 100 s ago and silent since: dwell is due, but the visit timed out.
        reply = (await post(api, dev, [ping(datetime.now(UTC) - timedelta(seconds=100))]))
        assert [e["type"] for e in reply.ok(202)["events"]] == ["enter"]
        # A phone that entered with it and spoke 45 s ago (within the timeout) is due its
        # dwell: once the sweeper has fired that one, it has looked at the silent phone too
        # (one query finds both).
        control = await api.device(unique_token())
        start = datetime.now(UTC)
        (await post(api, control, [ping(start - timedelta(seconds=100)),
                                   ping(start - timedelta(seconds=45))])).ok(202)

        async def control_dwelled() -> bool:
            return bool(await db.fetchval(
                "SELECT count(*) FROM events WHERE type = 'dwell' AND source = 'sweeper'"
                " AND device_id = $1", UUID(control.device_id)))

        await eventually(control_dwelled)
        assert await db.fetchval("SELECT count(*) FROM events WHERE type = 'dwell'"
                                 " AND device_id = $1", UUID(dev.device_id)) == 0
        reply = (await post(api, dev, [ping(datetime.now(UTC))])).ok(202)
        assert [e["type"] for e in reply["events"]] == ["exit", "enter"]
