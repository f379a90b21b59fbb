"""SPEC section 10: no names, tokens or coordinates in the logs at INFO, through a whole
realistic flow (registration with a proof, consent, a visit, a push with a first name,
loyalty, the leaderboard, a customer's erasure)."""

from __future__ import annotations

import logging

import pytest

from tests.api_client import Api, emulator_messages
from tests.conftest import unique_token
from tests.delivery_scenario import finished_delivery, open_shop, walk_in
from tests.loyalty_scenario import import_customers

FIRST_NAME = "Zephyrine"


async def test_a_whole_flow_logs_no_personal_data_at_info(
    gp: Api, emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await import_customers(gp, [("C-PII-1", FIRST_NAME, "Quartermaine")], last_names=True)
    shop = await open_shop(gp, message={"default_locale": "en", "translations": {
        "en": {"title": "Hello {first_name}", "body": "Coffee?"}}})
    fcm_token = unique_token("ok")
    phone = await gp.device(fcm_token, customer_id="C-PII-1")
    (await gp.call("PUT", "/v1/devices/me/consent", key=phone.token,
                   json={"location": True, "push": True, "leaderboard": True})).ok(200)
    reply = await walk_in(gp, shop, phone)
    await finished_delivery(gp, phone)
    [message] = await emulator_messages(emulator.base_url, fcm_token)
    assert FIRST_NAME in message["message"]["notification"]["title"]
    (await gp.call("GET", "/v1/leaderboard", key=phone.token)).ok(200)
    (await gp.call("GET", "/v1/devices/me/loyalty", key=phone.token)).ok(200)
    assert (await gp.as_role("marketer", "DELETE", "/v1/customers/C-PII-1")).status == 204

    logged = "\n".join(
        f"{r.getMessage()} {r.__dict__}" for r in caplog.records if r.levelno >= logging.INFO)
    assert caplog.records, "the flow logged something at INFO"
    secrets_ = [FIRST_NAME, "Quartermaine", fcm_token, phone.token,
                f"{shop.lat:.4f}", f"{shop.lon:.4f}",
                *(f"{e['ts']}" for e in reply["events"])]
    for secret in secrets_:
        assert secret not in logged, secret
