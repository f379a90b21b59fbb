"""Points that a phone cannot farm (SPEC section 11): store days, 24 hours, fresh pings."""

from __future__ import annotations

from datetime import timedelta

from tests.api.test_loyalty_checkins import _zone_past_midnight
from tests.api_client import Api
from tests.conftest import ADMIN_KEY, unique_token
from tests.loyalty_scenario import check_in, hours_ago, import_customers, loyalty, open_shop


async def test_changing_its_own_time_zone_wins_a_phone_no_second_day(api: Api) -> None:
    shop = await open_shop(api)
    phone = await api.device(unique_token(), timezone="Pacific/Kiritimati")  # UTC+14
    await check_in(api, phone, shop, hours_ago(0.4))
    (await api.call("PATCH", "/v1/devices/me", key=phone.token,
                    json={"timezone": "Etc/GMT+12"})).ok(200)  # UTC-12: "another day"
    await check_in(api, phone, shop, hours_ago(0.2))
    mine = await loyalty(api, phone)
    assert mine["points"] == 10 and mine["badges"][0]["code"] == "first_visit"
    assert mine["streak_days"] == 1


async def test_two_phones_of_one_customer_in_two_zones_check_in_once(api: Api, db) -> None:
    await import_customers(api, [("C-1", "Ada")])
    shop = await open_shop(api)
    east = await api.device(unique_token(), customer_id="C-1", timezone="Pacific/Kiritimati")
    west = await api.device(unique_token(), customer_id="C-1", timezone="Etc/GMT+12")
    at = hours_ago(0.3)
    await check_in(api, east, shop, at)
    await check_in(api, west, shop, at)
    assert (await loyalty(api, east))["points"] == 10
    assert await db.fetchval("SELECT count(*) FROM loyalty_ledger WHERE reason = 'checkin'") == 1


async def test_the_daily_maximum_holds_over_any_24_hours(start_server) -> None:
    """Two check-ins before the store's midnight and one after: the third is refused."""
    server = await start_server(loyalty={"max_checkins_per_day": 2})
    zone, midnight = _zone_past_midnight()
    async with Api(server.url, ADMIN_KEY) as api:
        shops = [await open_shop(api, i, timezone=zone) for i in range(3)]
        phone = await api.device(unique_token(), timezone=zone)
        for shop, minutes in zip(shops, (-45, -25, 10), strict=True):
            await check_in(api, phone, shop, midnight + timedelta(minutes=minutes))
        mine = await loyalty(api, phone)
        assert mine["points"] == 20


async def test_backdated_pings_make_a_visit_but_earn_no_points(start_server, db) -> None:
    """Pings up to 24 hours old are accepted (the visit and its offers stand), but points
    need pings received within [loyalty] checkin_max_delay_s of when they were taken."""
    server = await start_server(loyalty={"checkin_max_delay_s": 900})
    async with Api(server.url, ADMIN_KEY) as api:
        shops = [await open_shop(api, i) for i in range(6)]
        phone = await api.device(unique_token())
        for i, shop in enumerate(shops[:5]):  # five stores "visited" in the small hours
            reply = await check_in(api, phone, shop, hours_ago(10 - i))
            assert "dwell" in [e["type"] for e in reply["events"]]
        mine = await loyalty(api, phone)
        assert mine["points"] == 0 and mine["badges"] == []
        assert await db.fetchval("SELECT count(*) FROM events WHERE type = 'dwell'") == 5
        # A visit as it happens: its pings arrive within a few minutes.
        await check_in(api, phone, shops[5], hours_ago(0.06))
        mine = await loyalty(api, phone)
        assert mine["points"] == 10 and [b["code"] for b in mine["badges"]] == ["first_visit"]




async def test_signing_in_keeps_what_the_phone_earned_without_crediting_twice(
    api: Api, db
) -> None:
    from datetime import UTC, datetime

    from geopush.identity import issue_customer_proof
    from tests.api_client import CUSTOMER_LINK_SECRET, iso

    await import_customers(api, [("C-1", "Ada")])
    shops = [await open_shop(api, i) for i in range(3)]
    now = datetime.now(UTC)
    challenge = (await api.as_role("marketer", "POST", "/v1/challenges", json={
        "name": "Three shops", "kind": "distinct_stores", "target": 3,
        "starts_at": iso(now - timedelta(days=1)), "ends_at": iso(now + timedelta(days=1)),
        "reward_points": 5})).ok(201)
    known = await api.device(unique_token(), customer_id="C-1")
    await check_in(api, known, shops[1], hours_ago(2))            # the customer: shop 1
    anonymous = await api.device(unique_token())
    await check_in(api, anonymous, shops[0], hours_ago(1.5))      # anonymously: shop 0 ...
    await check_in(api, anonymous, shops[1], hours_ago(1))        # ... and shop 1 again
    before = await loyalty(api, anonymous)
    assert before["points"] == 20 and before["challenges"][0]["progress"] == 2

    (await api.call("PATCH", "/v1/devices/me", key=anonymous.token, json={
        "customer_id": "C-1",
        "customer_proof": issue_customer_proof("C-1", CUSTOMER_LINK_SECRET)})).ok(200)
    after = await loyalty(api, anonymous)
    # Shop 0 moves over; shop 1 that day was the customer's already: 10 + 10, not 30.
    assert after["points"] == 20
    assert [b["code"] for b in after["badges"]] == ["first_visit"]
    assert after["challenges"] == [{"id": challenge["id"], "name": "Three shops",
                                    "progress": 2, "target": 3, "completed_at": None}]
    assert (await loyalty(api, known))["points"] == 20
    desk = (await api.as_role("marketer", "GET", "/v1/customers/C-1/points")).ok(200)
    merges = [e for e in desk["items"] if e["reason"] == "merge"]
    assert len(merges) == 1 and merges[0]["points"] == 0 and "10 points" in merges[0]["note"]
    # The third shop completes the challenge with the merged progress.
    await check_in(api, anonymous, shops[2], hours_ago(0.5))
    done = await loyalty(api, anonymous)
    assert done["challenges"][0]["completed_at"] is not None and done["points"] == 20 + 10 + 5


async def test_seven_store_days_in_a_row_earn_streak_7_once(start_server) -> None:
    from datetime import UTC, datetime

    server = await start_server(geo={"max_ping_age_s": 9 * 86400},
                                loyalty={"checkin_max_delay_s": 9 * 86400,
                                         "badge_points": "streak_7=70"})
    async with Api(server.url, ADMIN_KEY) as api:
        shop = await open_shop(api, timezone="UTC")
        phone = await api.device(unique_token(), timezone="UTC")
        noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
        for back in range(7, 0, -1):  # seven UTC days in a row, the last one yesterday
            await check_in(api, phone, shop, noon - timedelta(days=back))
            mine = await loyalty(api, phone)
            assert ("streak_7" in [b["code"] for b in mine["badges"]]) == (back == 1)
        assert mine["streak_days"] == 7
        assert mine["points"] == 7 * 10 + 70
        codes = [b["code"] for b in mine["badges"]]
        assert codes.count("streak_7") == 1 and "streak_3" in codes


async def test_a_checkins_challenge_counts_only_its_stores(api: Api) -> None:
    from datetime import UTC, datetime

    from tests.api_client import iso

    shops = [await open_shop(api, i) for i in range(3)]
    now = datetime.now(UTC)
    challenge = (await api.as_role("marketer", "POST", "/v1/challenges", json={
        "name": "Twice at the first two", "kind": "checkins", "target": 2,
        "store_ids": [shops[0].store["id"], shops[1].store["id"]],
        "starts_at": iso(now - timedelta(days=1)), "ends_at": iso(now + timedelta(days=1)),
        "reward_points": 15})).ok(201)
    phone = await api.device(unique_token())
    await check_in(api, phone, shops[2], hours_ago(3))    # not one of its stores
    mine = await loyalty(api, phone)
    assert mine["challenges"][0]["progress"] == 0
    await check_in(api, phone, shops[0], hours_ago(2))
    await check_in(api, phone, shops[2], hours_ago(1.5))  # same day, same store: nothing
    assert (await loyalty(api, phone))["challenges"][0]["progress"] == 1
    await check_in(api, phone, shops[1], hours_ago(1))
    done = await loyalty(api, phone)
    [progress] = done["challenges"]
    assert progress["id"] == challenge["id"] and progress["progress"] == 2
    assert progress["completed_at"] is not None
    assert done["points"] == 3 * 10 + 15
