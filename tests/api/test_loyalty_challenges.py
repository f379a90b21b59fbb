"""Challenges and purchase points through the real server, database and FCM emulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.api_client import Api, emulator_messages, iso
from tests.conftest import ADMIN_KEY, unique_token
from tests.eventually import eventually
from tests.loyalty_scenario import check_in, hours_ago, import_customers, loyalty, open_shop

WELL_DONE = {"default_locale": "en", "translations": {
    "en": {"title": "Challenge complete", "body": "Well done {first_name}!"}}}


def _challenge(**fields: object) -> dict[str, object]:
    now = datetime.now(UTC)
    body: dict[str, object] = {"name": "Two shops", "kind": "distinct_stores", "target": 2,
                               "starts_at": iso(now - timedelta(days=1)),
                               "ends_at": iso(now + timedelta(days=1)), "reward_points": 25}
    body.update(fields)
    return body


async def test_a_completed_challenge_credits_its_reward_and_sends_its_offer(
    gp: Api, emulator, db
) -> None:
    api = gp
    await import_customers(api, [("C-1", "Ada"), ("C-2", "Bob")])
    shops = [await open_shop(api, i) for i in range(2)]
    offer = await api.offer(trigger="reward", message=WELL_DONE, ttl_s=3600, name="Reward")
    assert offer["geofence_ids"] == [] and offer["store_ids"] == []
    challenge = (await api.as_role("marketer", "POST", "/v1/challenges",
                                   json=_challenge(offer_id=offer["id"]))).ok(201)
    ada = await api.device(unique_token(), customer_id="C-1")
    await check_in(api, ada, shops[0], hours_ago(0.3))
    halfway = await loyalty(api, ada)
    assert halfway["challenges"] == [{"id": challenge["id"], "name": "Two shops",
                                      "progress": 1, "target": 2, "completed_at": None}]
    await check_in(api, ada, shops[1], hours_ago(0.2))
    done = await loyalty(api, ada)
    assert done["points"] == 10 + 10 + 25
    [progress] = done["challenges"]
    assert progress["progress"] == 2 and progress["completed_at"] is not None
    messages = await eventually(lambda: emulator_messages(emulator.base_url, ada.fcm_token))
    [message] = messages
    assert message["message"]["notification"] == {"title": "Challenge complete",
                                                  "body": "Well done Ada!"}

    # Without push consent the same reward is decided, and suppressed with its reason.
    bob = await api.device(unique_token(), customer_id="C-2", push=False)
    await check_in(api, bob, shops[0], hours_ago(0.2))
    await check_in(api, bob, shops[1], hours_ago(0.1))
    assert (await loyalty(api, bob))["points"] == 45
    stats = (await api.as_role("marketer", "GET", f"/v1/offers/{offer['id']}/stats")).ok(200)
    assert stats["suppressed"] == {"no_push_consent": 1}
    assert await db.fetchval("SELECT count(*) FROM challenge_completions") == 2
    # Completed once: more check-ins credit nothing more for it.
    await check_in(api, ada, shops[0], hours_ago(0.1))
    assert await db.fetchval(
        "SELECT count(*) FROM loyalty_ledger WHERE reason = 'challenge'") == 2


async def test_challenges_are_managed_by_marketers(api: Api) -> None:
    shop = await open_shop(api)
    enter = await api.offer(trigger="enter", store_ids=[shop.store["id"]])
    post = lambda body: api.as_role("marketer", "POST", "/v1/challenges", json=body)  # noqa: E731
    created = (await post(_challenge(store_ids=[shop.store["id"]]))).ok(201)
    assert created["store_ids"] == [shop.store["id"]] and created["offer_id"] is None
    for bad, status in (
        (_challenge(kind="steps"), 400),
        (_challenge(target=0), 400),
        (_challenge(ends_at="2020-01-01T00:00:00Z"), 400),
        (_challenge(starts_at="yesterday"), 400),
        (_challenge(colour="red"), 400),
        (_challenge(store_ids=["00000000-0000-0000-0000-000000000000"]), 422),
        (_challenge(offer_id=enter["id"]), 422),  # not a reward offer
    ):
        reply = await post(bad)
        assert reply.status == status, (bad, reply.body)
    path = f"/v1/challenges/{created['id']}"
    patched = (await api.as_role("marketer", "PATCH", path, json={"target": 3})).ok(200)
    assert patched["target"] == 3 and patched["name"] == "Two shops"
    assert (await api.as_role("marketer", "PATCH", path,
                              json={"ends_at": "2000-01-01T00:00:00Z"})).status == 400
    listed = (await api.as_role("ops", "GET", "/v1/challenges")).ok(200)
    assert [c["id"] for c in listed["items"]] == [created["id"]]
    assert (await api.as_role("app", "GET", "/v1/challenges")).status == 403
    assert (await api.as_role("marketer", "DELETE", path)).status == 204
    assert (await api.as_role("marketer", "GET", path)).status == 404
    assert (await api.as_role("marketer", "DELETE", path)).status == 404


TRANSACTIONS = """transaction_id,customer_id,store_external_id,ts,amount,category,line
T1,C-1,,{ts},12.50,bakery,1
T2,C-1,,{ts},3.99,dairy,1
T3,C-2,,{ts},5,bakery,1
T3,C-2,,{ts},5.5,dairy,2
T4,C-2,,{ts},-20,bakery,1
"""


async def test_purchases_earn_points_at_import_and_complete_challenges(api: Api, db) -> None:
    await import_customers(api, [("C-1", "Ada"), ("C-2", "Bob")])
    challenge = (await api.as_role("marketer", "POST", "/v1/challenges", json=_challenge(
        name="Two purchases", kind="purchases", target=2, reward_points=7))).ok(201)
    csv = TRANSACTIONS.format(ts=iso(datetime.now(UTC) - timedelta(hours=1))).encode()

    async def send() -> dict:
        reply = await api.as_role("marketer", "POST", "/v1/transactions/import", data=csv,
                                  headers={"Content-Type": "text/csv"})
        return reply.ok(200)

    first = await send()
    assert first["loyalty"] == {"purchases": 3, "points": 12 + 3 + 10,
                                "challenges_completed": 1}
    again = await send()  # the same file again: duplicates earn nothing
    assert again["loyalty"]["points"] == 0
    ada = (await api.as_role("marketer", "GET", "/v1/customers/C-1/points")).ok(200)
    assert ada["points"] == 12 + 3 + 7
    assert sorted((e["reason"], e["ref"], e["points"]) for e in ada["items"]) == sorted([
        ("purchase", "T1", 12), ("purchase", "T2", 3), ("challenge", challenge["id"], 7)])
    bob = (await api.as_role("marketer", "GET", "/v1/customers/C-2/points")).ok(200)
    assert bob["points"] == 10  # one basket of two lines; the refund takes nothing back


async def test_a_queued_reward_is_cancelled_when_push_consent_is_withdrawn(
    start_server, db
) -> None:
    """SPEC section 10: push withdrawn, every queued delivery goes, rewards included."""
    server = await start_server(server={"run_sender": False})
    async with Api(server.url, ADMIN_KEY) as api:
        await import_customers(api, [("C-1", "Ada")])
        shops = [await open_shop(api, i) for i in range(2)]
        offer = await api.offer(trigger="reward", message=WELL_DONE, ttl_s=3600)
        (await api.as_role("marketer", "POST", "/v1/challenges",
                           json=_challenge(offer_id=offer["id"]))).ok(201)
        ada = await api.device(unique_token(), customer_id="C-1")
        await check_in(api, ada, shops[0], hours_ago(0.3))
        await check_in(api, ada, shops[1], hours_ago(0.2))
        queued = await db.fetch("SELECT status FROM deliveries WHERE trigger = 'reward'")
        assert [r["status"] for r in queued] == ["queued"]
        (await api.call("PUT", "/v1/devices/me/consent", key=ada.token,
                        json={"location": True, "push": False})).ok(200)
        after = await db.fetchrow("SELECT status, reason FROM deliveries WHERE trigger = 'reward'")
        assert (after["status"], after["reason"]) == ("cancelled", "consent_withdrawn")
