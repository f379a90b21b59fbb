"""Foresight (SPEC 16): a marketer's test push reaches the one device, now, counted nowhere."""

from __future__ import annotations

import asyncpg

from tests.api_client import Api, emulator_messages
from tests.delivery_scenario import open_shop

MISSING = "00000000-0000-4000-8000-00000000dead"


async def test_a_test_push_reaches_the_device_marked_and_counts_nowhere(
        gp: Api, emulator, db: asyncpg.Connection) -> None:
    shop = await open_shop(gp, name="Coffee", max_sends=1, message={
        "default_locale": "en",
        "translations": {"en": {"title": "Hello {first_name}", "body": "At {store_name}"},
                         "fr": {"title": "Bonjour", "body": "Chez {store_name}"}}})
    phone = await gp.device("tok-test-push", locale="fr-CA")
    path = f"/v1/offers/{shop.offer['id']}/test"
    for _ in range(2):  # twice: no budget, cooldown or cap stops a test
        reply = (await gp.as_role("marketer", "POST", path,
                                  json={"device_id": phone.device_id})).ok(200)
        assert reply["sent"] is True and reply["title"] == "Bonjour"
    messages = await emulator_messages(emulator.base_url, phone.fcm_token)
    assert len(messages) == 2
    msg = messages[0]["message"]
    assert msg["notification"] == {"title": "Bonjour", "body": f"Chez {shop.store['name']}"}
    assert msg["data"]["test"] == "1" and msg["data"]["offer_id"] == shop.offer["id"]
    assert await db.fetchval("SELECT count(*) FROM deliveries") == 0
    assert await db.fetchval("SELECT count(*) FROM decisions") == 0

    unknown = await gp.as_role("marketer", "POST", path, json={"device_id": MISSING})
    assert unknown.status == 404
    assert (await gp.as_role("marketer", "POST", path, json={"device_id": "nope"})).status == 404
    assert (await gp.as_role("marketer", "POST", f"/v1/offers/{MISSING}/test",
                             json={"device_id": phone.device_id})).status == 404
    assert (await gp.as_role("ops", "POST", path,
                             json={"device_id": phone.device_id})).status == 403
    assert len(await emulator_messages(emulator.base_url, phone.fcm_token)) == 2
