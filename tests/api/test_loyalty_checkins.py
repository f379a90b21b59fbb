"""Check-ins through the real server and database (SPEC section 11): one rule per test."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.api_client import Api, metric_value, walk
from tests.conftest import unique_token
from tests.eventually import eventually
from tests.loyalty_scenario import (
    check_in,
    hours_ago,
    import_customers,
    loyalty,
    open_shop,
    visit_pings,
)


async def test_a_checkin_counts_once_per_store_per_local_day(api: Api, db) -> None:
    first, second = await open_shop(api, 0), await open_shop(api, 1)
    phone = await api.device(unique_token())  # a zone where it is about noon now
    await check_in(api, phone, first, hours_ago(3))
    await check_in(api, phone, first, hours_ago(2))  # same store, same day: nothing more
    mine = await loyalty(api, phone)
    assert mine["points"] == 10 and mine["lifetime_points"] == 10
    assert [b["code"] for b in mine["badges"]] == ["first_visit"]
    assert mine["level"] == "bronze" and mine["streak_days"] == 1
    await check_in(api, phone, second, hours_ago(1))  # another store the same day counts
    assert (await loyalty(api, phone))["points"] == 20
    rows = await db.fetch("SELECT reason, points, store_id::text FROM loyalty_ledger"
                          " ORDER BY id")
    assert [(r["reason"], r["points"], r["store_id"]) for r in rows] == [
        ("checkin", 10, first.store["id"]), ("checkin", 10, second.store["id"])]


async def test_the_daily_limit_caps_checkins(start_server, db) -> None:
    from tests.conftest import ADMIN_KEY

    server = await start_server(loyalty={"max_checkins_per_day": 2, "points_per_checkin": 7})
    async with Api(server.url, ADMIN_KEY) as api:
        shops = [await open_shop(api, i) for i in range(3)]
        phone = await api.device(unique_token())
        for i, shop in enumerate(shops):
            await check_in(api, phone, shop, hours_ago(3 - i))
        assert (await loyalty(api, phone))["points"] == 14
    assert await db.fetchval("SELECT count(*) FROM loyalty_ledger WHERE reason = 'checkin'") == 2


async def test_mocked_pings_earn_nothing(api: Api, db) -> None:
    shop = await open_shop(api)
    phone = await api.device(unique_token())
    body = {"pings": [{"lat": lat, "lon": lon, "accuracy_m": 5, "ts": ts.isoformat(),
                       "mocked": True} for lat, lon, ts in visit_pings(shop, hours_ago(1))]}
    reply = (await api.call("POST", "/v1/pings", key=phone.token, json=body)).ok(202)
    assert reply["accepted"] == 0 and {r["reason"] for r in reply["rejected"]} == {"mocked"}
    # A teleport (1,000 km in a minute) is refused the same way and earns nothing either.
    far = [(shop.lat + 9, shop.lon, hours_ago(0.5)), (shop.lat, shop.lon, hours_ago(0.49)),
           (shop.lat, shop.lon, hours_ago(0.47))]
    reply = (await api.pings(phone, far)).ok(202)
    assert "dwell" not in [e["type"] for e in reply["events"]]
    mine = await loyalty(api, phone)
    assert mine["points"] == 0 and mine["badges"] == []
    assert await db.fetchval("SELECT count(*) FROM loyalty_ledger") == 0


def _zone_past_midnight() -> tuple[str, datetime]:
    """An Etc/GMT zone where local time is now between 01:00 and 02:00, and the UTC instant
    of its last local midnight."""
    now = datetime.now(UTC)
    offset = (1 - now.hour) % 24
    if offset > 14:
        offset -= 24
    name = "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"
    local_midnight = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    return name, local_midnight


async def test_a_streak_follows_the_stores_midnight(api: Api, db) -> None:
    zone, midnight = _zone_past_midnight()
    shop = await open_shop(api, timezone=zone)
    phone = await api.device(unique_token())  # its own zone does not matter
    # Twenty minutes before and after local midnight: two local days, though one UTC hour.
    await check_in(api, phone, shop, midnight - timedelta(minutes=20))
    await check_in(api, phone, shop, midnight + timedelta(minutes=15))
    mine = await loyalty(api, phone)
    assert mine["points"] == 20 and mine["streak_days"] == 2
    days = [r[0] for r in await db.fetch(
        "SELECT local_day FROM loyalty_ledger ORDER BY local_day")]
    assert (days[1] - days[0]).days == 1


async def test_streak_badges_over_consecutive_local_days(start_server, db) -> None:
    from tests.conftest import ADMIN_KEY

    server = await start_server(geo={"max_ping_age_s": 5 * 86400},
                                loyalty={"badge_points": "streak_3=30",
                                         "checkin_max_delay_s": 5 * 86400})
    async with Api(server.url, ADMIN_KEY) as api:
        shop = await open_shop(api, timezone="UTC")
        phone = await api.device(unique_token(), timezone="UTC")
        midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        for back in (3, 2, 1):  # three UTC days in a row, the last one yesterday
            await check_in(api, phone, shop, midnight - timedelta(days=back, minutes=-5))
        mine = await loyalty(api, phone)
        codes = [b["code"] for b in mine["badges"]]
        assert codes == ["first_visit", "streak_3"]
        assert mine["points"] == 3 * 10 + 30
        # Yesterday's check-in keeps the streak alive today.
        assert mine["streak_days"] == 3


async def test_the_sweeper_dwell_checks_in_too(start_server, db) -> None:
    """A phone that stops sending inside still gets its dwell, and with it its check-in."""
    from tests.conftest import ADMIN_KEY

    server = await start_server()
    async with Api(server.url, ADMIN_KEY) as api:
        shop = await open_shop(api)
        phone = await api.device(unique_token())
        now = datetime.now(UTC)
        (await api.pings(phone, [(shop.lat, shop.lon, now - timedelta(seconds=61))])).ok(202)
        await eventually(lambda: db.fetchval("SELECT count(*) FROM loyalty_ledger"))
        assert (await loyalty(api, phone))["points"] == 10
        source = await db.fetchval("SELECT source FROM events WHERE type = 'dwell'")
        assert source == "sweeper"


async def test_badges_once_each_under_concurrent_dwells_of_one_customer(
    start_server, db
) -> None:
    """Two phones of one customer check in at the same moment, ten stores in all: every
    badge is awarded once, its bonus credited once, and the counts see both phones."""
    from tests.conftest import ADMIN_KEY

    server = await start_server(loyalty={
        "max_checkins_per_day": 20, "badge_points": "first_visit=5,explorer=50,regular=100"})
    async with Api(server.url, ADMIN_KEY) as api:
        await import_customers(api, [("C-1", "Ada")])
        shops = [await open_shop(api, i) for i in range(10)]
        phones = [await api.device(unique_token(), customer_id="C-1") for _ in range(2)]
        start = hours_ago(4)
        before = (await api.call("GET", "/metrics")).body
        for round_ in range(5):
            at = start + timedelta(minutes=30 * round_)
            await asyncio.gather(
                check_in(api, phones[0], shops[round_], at),
                check_in(api, phones[1], shops[5 + round_], at),
            )
        # Both phones at one store at once: one check-in, not two.
        await asyncio.gather(*(check_in(api, p, shops[0], start + timedelta(hours=3))
                               for p in phones))
        mine = await loyalty(api, phones[1])
        assert sorted(b["code"] for b in mine["badges"]) == ["explorer", "first_visit",
                                                             "regular"]
        assert mine["points"] == 10 * 10 + 5 + 50 + 100
        after = (await api.call("GET", "/metrics")).body

        def grew(name: str, **labels: str) -> float:
            try:
                old = metric_value(before, name, **labels)
            except AssertionError:  # the series did not exist yet
                old = 0.0
            return metric_value(after, name, **labels) - old

        assert grew("geopush_badges_total", code="regular") == 1
        assert grew("geopush_loyalty_points_total", reason="checkin") == 100
        assert grew("geopush_loyalty_points_total", reason="badge") == 155
    assert await db.fetchval("SELECT count(*) FROM loyalty_badges") == 3
    assert await db.fetchval(
        "SELECT count(*) FROM loyalty_ledger WHERE reason = 'badge'") == 3
    assert await db.fetchval(
        "SELECT count(DISTINCT subject) FROM loyalty_ledger") == 1


async def test_a_geofence_without_store_earns_nothing(api: Api, db) -> None:
    fence = await api.circle(39.95, 116.40, 100, dwell_s=60)
    phone = await api.device(unique_token())
    path = walk(39.95, 116.40, 0, 0, 3, hours_ago(1), every_s=40)
    reply = (await api.pings(phone, path)).ok(202)
    assert [e["type"] for e in reply["events"]] == ["enter", "dwell"]
    assert fence["id"] == reply["events"][1]["geofence_id"]
    assert await db.fetchval("SELECT count(*) FROM loyalty_ledger") == 0
