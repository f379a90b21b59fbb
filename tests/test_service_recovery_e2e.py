"""SPEC section 14 end to end: phone → visit → feedback 1/5 → the store's system receives a
signed alert → the recovery push reaches the fr-CA phone in French → staff mark the case
contacted → the phone visits again → the case is recovered."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from geopush.emulator.thread import EmulatorThread
from tests.alert_receiver import SIGNING_SECRET, AlertReceiver
from tests.api_client import Api, emulator_messages, metric_value
from tests.conftest import ADMIN_KEY, unique_token
from tests.delivery_scenario import sections
from tests.loyalty_scenario import import_customers
from tests.service_scenario import rated_store, visit, wait_until

SORRY = {
    "default_locale": "en",
    "translations": {
        "en": {"title": "We are sorry, {first_name}", "body": "Your next coffee at"
               " {store_name} is on us"},
        "fr": {"title": "Toutes nos excuses, {first_name}", "body": "Votre prochain café chez"
               " {store_name} est offert"},
    },
}
CONFIG = sections(
    alerts={"signing_secret": SIGNING_SECRET, "allow_private_addresses": True,
            "poll_interval_s": 0.05, "retry_base_s": 0.05, "retry_cap_s": 0.1},
    feedback={"delay_s": 0},
    geo={"future_skew_s": 600},
)


@pytest.fixture
async def receiver() -> AsyncIterator[AlertReceiver]:
    r = AlertReceiver()
    await r.start()
    yield r
    await r.stop()


async def test_bad_visit_is_heard_recovered_and_the_customer_returns(
    start_server: Callable[..., Any], emulator: EmulatorThread, receiver: AlertReceiver,
) -> None:
    server = await start_server(**CONFIG)
    async with Api(server.url, ADMIN_KEY) as api:
        shop = await rated_store(api, alert_url=receiver.url)
        recovery = await api.offer(trigger="recovery", store_ids=[shop.store["id"]],
                                   message=SORRY, name="Sorry coffee", ttl_s=3600)
        await import_customers(api, [("cust-e2e", "Amélie", "Poulain")], last_names=True)
        phone = await api.device(unique_token("e2e"), locale="fr-CA", customer_id="cust-e2e")

        # The visit, then the answer: 1/5, empathy 1 where 5 was expected.
        await visit(api, shop, phone, datetime.now(UTC) - timedelta(minutes=10))
        answer = (await api.call("POST", "/v1/feedback", key=phone.token, json={
            "store_id": shop.store["id"], "overall": 1,
            "dimensions": {"empathy": 1, "responsiveness": 2},
            "expectations": {"empathy": 5},
            "comment": "Personne ne m'a aidée à la caisse.",
        })).ok(201)
        case_id = answer["case_id"]

        # The store's system gets the alert, its signature verified by the receiver.
        async def alerted() -> list[dict[str, Any]]:
            return [a for a in receiver.alerts.values() if a.get("case_id") == case_id]

        alert = (await wait_until(alerted, 15))[0]
        assert receiver.bad_signatures == 0
        assert alert["type"] == "service_recovery"
        assert alert["store_id"] == shop.store["id"]
        assert alert["overall"] == 1 and alert["dimensions"]["empathy"] == 1
        assert alert["comment"] == "Personne ne m'a aidée à la caisse."
        assert alert["language"] == "fr-CA" and alert["first_name"] == "Amélie"
        assert "Poulain" not in str(alert)  # the first name, never the surname

        # The recovery offer reaches the phone, in French.
        async def pushed() -> list[dict[str, Any]]:
            return [m for m in await emulator_messages(emulator.base_url, phone.fcm_token)
                    if m["message"]["data"]["offer_id"] == recovery["id"]]

        push = (await wait_until(pushed, 15))[0]["message"]["notification"]
        assert push["title"] == "Toutes nos excuses, Amélie"
        assert push["body"] == "Votre prochain café chez Rue Cartier est offert"

        # Staff call the customer back.
        case = (await api.as_role("ops", "PATCH", f"/v1/cases/{case_id}",
                                  json={"status": "contacted",
                                        "resolution": "Called, apologised"})).ok(200)
        assert case["status"] == "contacted" and case["first_response_at"] is not None
        assert case["recovered"] is False

        # The customer comes back: the case is recovered.
        await visit(api, shop, phone, datetime.now(UTC) + timedelta(seconds=1))
        cases = (await api.as_role("marketer", "GET",
                                   f"/v1/cases?store_id={shop.store['id']}")).ok(200)
        assert [(c["id"], c["status"], c["recovered"]) for c in cases["items"]] == [
            (case_id, "contacted", True)]
        service = (await api.as_role("marketer", "GET", "/v1/service?days=30")).ok(200)
        figures = service["stores"][0]["recovery"]
        assert figures["cases"] == 1 and figures["recovered"] == 1.0
        assert figures["resolved_within_sla"] == 0.0
        worst = service["stores"][0]["dimensions"][0]
        assert worst == {"dimension": "empathy", "perception": 1.0, "expectation": 5.0,
                         "gap": -4.0, "n": 1}
        text = (await api.call("GET", "/metrics")).body
        assert metric_value(text, "geopush_feedback_total", overall="1") >= 1
        assert metric_value(text, "geopush_cases_total", status="contacted") >= 1
        assert metric_value(text, "geopush_cases_total", status="recovered") >= 1
