"""Points desk, leaderboards, levels and erasure, through the real server (SPEC 10, 11)."""

from __future__ import annotations

from tests.api_client import Api
from tests.conftest import unique_token
from tests.loyalty_scenario import (
    check_in,
    hours_ago,
    import_customers,
    loyalty,
    open_shop,
)


async def _points(api: Api, customer_id: str, points: int, reason: str, note: str = "desk"):
    return await api.as_role("marketer", "POST", f"/v1/customers/{customer_id}/points",
                             json={"points": points, "reason": reason, "note": note})


async def test_a_balance_never_goes_below_zero(api: Api, db) -> None:
    await import_customers(api, [("C-7", "Lou")])
    (await _points(api, "C-7", 30, "adjustment", "welcome gift")).ok(201)
    refused = await _points(api, "C-7", -50, "redemption")
    assert refused.status == 409 and refused.body["error"]["code"] == "insufficient_points"
    spent = (await _points(api, "C-7", -30, "redemption", "free coffee")).ok(201)
    assert spent["points"] == 0 and spent["lifetime_points"] == 30
    assert (await _points(api, "C-7", -1, "adjustment")).status == 409
    # Bad input is a 400 that changes nothing; an unknown customer a 404.
    assert (await _points(api, "C-7", 5, "redemption")).status == 400
    assert (await _points(api, "C-7", 5, "checkin")).status == 400
    assert (await _points(api, "C-7", 0, "adjustment")).status == 400
    assert (await _points(api, "C-7", 10**12, "adjustment")).status == 400
    assert (await _points(api, "nobody", 5, "adjustment")).status == 404
    desk = (await api.as_role("marketer", "GET", "/v1/customers/C-7/points")).ok(200)
    assert desk["points"] == 0
    assert [(e["reason"], e["points"]) for e in desk["items"]] == [
        ("redemption", -30), ("adjustment", 30)]
    profile = (await api.as_role("marketer", "GET", "/v1/customers/C-7")).ok(200)
    assert [e["note"] for e in profile["loyalty"]["ledger"]] == ["free coffee", "welcome gift"]
    assert await db.fetchval("SELECT count(*) FROM loyalty_ledger") == 2
    assert (await api.as_role("app", "GET", "/v1/customers/C-7/points")).status == 403


async def test_the_leaderboard_shows_only_customers_who_opted_in(api: Api) -> None:
    await import_customers(api, [("C-1", "Ada", "Lovelace"), ("C-2", "Bob", "Marley"),
                                 ("C-3", "Cy", "Twombly")], last_names=True)
    shops = [await open_shop(api, i) for i in range(3)]
    phones = {c: await api.device(unique_token(), customer_id=c) for c in ("C-1", "C-2", "C-3")}
    # C-1 checks in at three stores, C-2 at two, C-3 (never opted in) at all three.
    for customer, count in (("C-1", 3), ("C-2", 2), ("C-3", 3)):
        for i in range(count):
            await check_in(api, phones[customer], shops[i], hours_ago(3 - i * 0.5))
    for customer in ("C-1", "C-2"):
        (await api.call("PUT", "/v1/devices/me/consent", key=phones[customer].token,
                        json={"location": True, "push": True, "leaderboard": True})).ok(200)
    board = (await api.call("GET", "/v1/leaderboard?period=week",
                            key=phones["C-2"].token)).ok(200)
    assert [(i["rank"], i["name"], i["points"]) for i in board["items"]] == [
        (1, "Ada L.", 30), (2, "Bob M.", 20)]
    assert board["me"] == {"rank": 2, "points": 20, "listed": True}
    assert "Cy" not in str(board) and "C-3" not in str(board)
    # The one who did not opt in still learns their own rank, and is shown to nobody.
    mine = (await api.call("GET", "/v1/leaderboard?period=month",
                           key=phones["C-3"].token)).ok(200)
    assert mine["me"] == {"rank": 1, "points": 30, "listed": False}
    assert [i["name"] for i in mine["items"]] == ["Ada L.", "Bob M."]
    # Per store: the second shop saw C-1 and C-2 once each.
    store = shops[1].store["id"]
    at_store = (await api.call("GET", f"/v1/leaderboard?store_id={store}",
                               key=phones["C-1"].token)).ok(200)
    assert [(i["name"], i["points"]) for i in at_store["items"]] == [("Ada L.", 10),
                                                                    ("Bob M.", 10)]
    # Withdrawal takes effect at once.
    (await api.call("PUT", "/v1/devices/me/consent", key=phones["C-1"].token,
                    json={"location": True, "push": True, "leaderboard": False})).ok(200)
    board = (await api.call("GET", "/v1/leaderboard", key=phones["C-2"].token)).ok(200)
    assert [i["name"] for i in board["items"]] == ["Bob M."]
    bad = await api.call("GET", "/v1/leaderboard?period=year", key=phones["C-2"].token)
    assert bad.status == 400
    assert (await api.call("GET", "/v1/leaderboard?store_id=x",
                           key=phones["C-2"].token)).status == 400
    assert (await api.call("GET", "/v1/leaderboard")).status == 401


async def test_erasure_removes_the_ledgers_identifiers(api: Api, db) -> None:
    await import_customers(api, [("C-5", "Eve")])
    shop = await open_shop(api)
    linked = await api.device(unique_token(), customer_id="C-5")
    loose = await api.device(unique_token())
    await check_in(api, linked, shop, hours_ago(2))
    await check_in(api, loose, shop, hours_ago(2))
    (await _points(api, "C-5", -5, "redemption", "Eve's coffee")).ok(201)
    assert await db.fetchval("SELECT count(*) FROM loyalty_badges") == 2

    assert (await api.call("DELETE", "/v1/devices/me", key=loose.token)).status == 204
    assert await db.fetchval(
        "SELECT count(*) FROM loyalty_ledger WHERE device_id = $1 OR subject = $2",
        loose.device_id, f"d:{loose.device_id}") == 0
    assert (await api.as_role("marketer", "DELETE", "/v1/customers/C-5")).status == 204
    leftovers = await db.fetch(
        "SELECT subject, customer_id, device_id, note FROM loyalty_ledger"
        " UNION ALL SELECT subject, customer_id, device_id, NULL FROM loyalty_badges")
    assert leftovers and all(tuple(r) == (None, None, None, None) for r in leftovers)
    # The totals survive without anyone behind them.
    assert await db.fetchval("SELECT sum(points) FROM loyalty_ledger") == 15
    summary = (await api.as_role("ops", "GET", "/v1/loyalty/summary")).ok(200)
    assert summary["earned"] == 20 and summary["redeemed"] == 5
    assert summary["badges"] == {"first_visit": 2}


async def test_an_offer_can_target_levels(api: Api, db) -> None:
    shop = await open_shop(api)
    refused = await api.as_role("marketer", "POST", "/v1/offers", json={
        "trigger": "dwell", "store_ids": [shop.store["id"]], "levels": ["platinum"],
        "message": {"default_locale": "en", "translations": {"en": {"title": "t",
                                                                     "body": "b"}}}})
    assert refused.status == 400 and "levels.0" in refused.body["error"]["message"]
    offer = await api.offer(trigger="dwell", store_ids=[shop.store["id"]], levels=["gold"])
    assert offer["levels"] == ["gold"]
    phone = await api.device(unique_token())
    await check_in(api, phone, shop, hours_ago(1))
    reasons = [r[0] for r in await db.fetch("SELECT reason FROM decisions")]
    assert reasons == ["level_mismatch"]
    assert (await loyalty(api, phone))["level"] == "bronze"


async def test_every_level_follows_lifetime_points_and_targets_its_offers(api: Api, db) -> None:
    """bronze from 0, silver from 500, gold from 2000 (the defaults); redeeming keeps a level."""
    await import_customers(api, [("C-S", "Sam"), ("C-G", "Gil"), ("C-B", "Bea")])
    shop = await open_shop(api)
    await api.offer(trigger="dwell", store_ids=[shop.store["id"]], levels=["silver", "gold"],
                    ttl_s=7200)
    phones = {}
    for customer, points in (("C-S", 500 - 10), ("C-G", 2000 - 10), ("C-B", 500 - 11)):
        (await api.as_role("marketer", "POST", f"/v1/customers/{customer}/points",
                           json={"points": points, "reason": "adjustment"})).ok(201)
        phones[customer] = await api.device(unique_token(), customer_id=customer)
        await check_in(api, phones[customer], shop, hours_ago(1))  # +10 for the check-in
    levels = {c: (await loyalty(api, p))["level"] for c, p in phones.items()}
    assert levels == {"C-S": "silver", "C-G": "gold", "C-B": "bronze"}
    # The dwell's decision sees the level with the check-in it just earned.
    rows = await db.fetch("SELECT d.customer_id, x.reason FROM decisions x"
                          " JOIN devices d ON d.device_id = x.device_id")
    by_customer = {r["customer_id"]: r["reason"] for r in rows}
    assert by_customer == {"C-B": "level_mismatch", "C-S": None, "C-G": None}
    # Spending points does not lower a level.
    (await api.as_role("marketer", "POST", "/v1/customers/C-G/points",
                       json={"points": -1500, "reason": "redemption"})).ok(201)
    assert (await loyalty(api, phones["C-G"]))["level"] == "gold"


async def test_the_points_desk_knows_a_customer_only_linked_from_a_device(api: Api) -> None:
    """Signed up in the app, not yet in the CRM import: still a customer at the desk."""
    shop = await open_shop(api)
    phone = await api.device(unique_token(), customer_id="C-APP")
    await check_in(api, phone, shop, hours_ago(1))
    desk = (await api.as_role("marketer", "GET", "/v1/customers/C-APP/points")).ok(200)
    assert desk["points"] == 10
    (await api.as_role("marketer", "POST", "/v1/customers/C-APP/points",
                       json={"points": -4, "reason": "redemption"})).ok(201)
    assert (await loyalty(api, phone))["points"] == 6
    assert (await api.as_role("marketer", "GET", "/v1/customers/C-NONE/points")).status == 404


async def test_leaderboard_consent_belongs_to_the_customer_and_is_logged(api: Api, db) -> None:
    """A phone that opted in, unlinked and linked another customer does not put that
    customer on the board; a second phone of a consenting customer shows them."""
    from geopush.identity import issue_customer_proof
    from tests.api_client import CUSTOMER_LINK_SECRET

    await import_customers(api, [("C-A", "Att", "Acker"), ("C-V", "Vic", "Tim")],
                           last_names=True)
    shop = await open_shop(api)
    victim = await api.device(unique_token(), customer_id="C-V")
    await check_in(api, victim, shop, hours_ago(2))
    phone = await api.device(unique_token(), customer_id="C-A")
    (await api.call("PUT", "/v1/devices/me/consent", key=phone.token,
                    json={"location": True, "push": True, "leaderboard": True})).ok(200)
    (await api.call("PATCH", "/v1/devices/me", key=phone.token,
                    json={"customer_id": None})).ok(200)
    relinked = (await api.call("PATCH", "/v1/devices/me", key=phone.token, json={
        "customer_id": "C-V",
        "customer_proof": issue_customer_proof("C-V", CUSTOMER_LINK_SECRET)})).ok(200)
    assert relinked["consent"]["leaderboard"] is False
    board = (await api.call("GET", "/v1/leaderboard", key=victim.token)).ok(200)
    assert board["items"] == [] and "Vic" not in str(board)
    # Every change was logged, the ones the links made included.
    logged = [r["leaderboard"] for r in await db.fetch(
        "SELECT leaderboard FROM consent_log WHERE device_id = $1::uuid ORDER BY id",
        phone.device_id)]
    assert logged[-2:] == [True, False]
    # The attacker's own consent was theirs: a new phone of C-A is on the board at once.
    second = await api.device(unique_token(), customer_id="C-A")
    await check_in(api, second, shop, hours_ago(1))
    (await api.call("PUT", "/v1/devices/me/consent", key=second.token,
                    json={"location": True, "push": True, "leaderboard": True})).ok(200)
    board = (await api.call("GET", "/v1/leaderboard", key=victim.token)).ok(200)
    assert [i["name"] for i in board["items"]] == ["Att A."]


async def test_leaderboard_reads_are_rate_limited_per_device(start_server) -> None:
    from tests.conftest import ADMIN_KEY

    server = await start_server(limits={"leaderboard_rate_per_min": 6})
    async with Api(server.url, ADMIN_KEY) as api:
        phone, other = await api.device(unique_token()), await api.device(unique_token())
        answers = [await api.call("GET", "/v1/leaderboard", key=phone.token) for _ in range(3)]
        assert [a.status for a in answers] == [200, 200, 429]
        assert answers[-1].body["error"]["code"] == "rate_limited"
        assert int(answers[-1].headers["Retry-After"]) >= 1
        # Another phone is not held back by it.
        assert (await api.call("GET", "/v1/leaderboard", key=other.token)).status == 200
