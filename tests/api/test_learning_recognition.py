"""Recognition by name (SPEC section 15): a best customer who consented walks in, and the
store's system gets one signed `vip_arrival` alert that day, with what staff need."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.alert_receiver import SIGNING_SECRET, AlertReceiver
from tests.api_client import Api, walk
from tests.conftest import ADMIN_KEY, unique_token
from tests.eventually import eventually

ALERTS = {"signing_secret": SIGNING_SECRET, "allow_private_addresses": True,
          "poll_interval_s": 0.05, "retry_base_s": 0.05, "retry_cap_s": 0.1}
LAT, LON = 39.93, 116.40
CSV = {"Content-Type": "text/csv"}


@pytest.fixture
async def receiver() -> AsyncIterator[AlertReceiver]:
    r = AlertReceiver()
    await r.start()
    yield r
    await r.stop()


async def _vip_alerts(db: asyncpg.Connection) -> int:
    return await db.fetchval("SELECT count(*) FROM store_alerts WHERE kind = 'vip_arrival'")


async def test_best_customer_is_greeted_once_a_day(start_server: Any, db: asyncpg.Connection,
                                                   receiver: AlertReceiver) -> None:
    server = await start_server(alerts=ALERTS)
    async with Api(server.url, ADMIN_KEY) as api:
        body = ("customer_id,first_name,language,created_at\n"
                "VIP,Camille,fr,2020-01-01T00:00:00Z\nSHY,Paul,fr,2020-01-01T00:00:00Z\n"
                "NEW,Lea,fr,2024-01-01T00:00:00Z\n")
        (await api.as_role("marketer", "POST", "/v1/customers/import", data=body.encode(),
                           headers=CSV)).ok(200)
        await db.execute("UPDATE customers SET segment = 'best' WHERE customer_id <> 'NEW'")
        store = await api.store(alert_url=receiver.url, location={"lat": LAT, "lon": LON})
        await api.circle(LAT, LON, 150, store_id=store["id"])

        vip = await api.device(unique_token(), customer_id="VIP")
        reply = await api.call("PUT", "/v1/devices/me/consent", key=vip.token, json={
            "location": True, "push": True, "recognition": True})
        assert reply.ok(200)["consent"]["recognition"] is True
        (await api.call("PUT", "/v1/devices/me/preferences", key=vip.token,
                        json={"interests": ["wine"]})).ok(200)
        shy = await api.device(unique_token(), customer_id="SHY")  # no recognition consent
        new = await api.device(unique_token(), customer_id="NEW")  # neither best nor gold
        (await api.call("PUT", "/v1/devices/me/consent", key=new.token, json={
            "location": True, "push": True, "recognition": True})).ok(200)

        start = datetime.now(UTC) - timedelta(minutes=10)
        for dev in (vip, shy, new):
            (await api.pings(dev, walk(LAT, LON, -400, 0, 5, start))).ok(202)
        # The VIP leaves and comes back the same day: staff were told already.
        again = walk(LAT, LON, 0, 600, 4, start + timedelta(minutes=2)) + walk(
            LAT, LON, 600, 0, 4, start + timedelta(minutes=4))
        events = (await api.pings(vip, again)).ok(202)["events"]
        assert [e["type"] for e in events] == ["exit", "enter"]

        async def alerted() -> bool:
            """the store got its alert"""
            return bool(receiver.alerts)

        await eventually(alerted, within=20)
        [alert] = receiver.alerts.values()
        assert alert["type"] == "vip_arrival" and alert["store_id"] == store["id"]
        assert alert["first_name"] == "Camille"
        assert alert["segment"] == "best" and alert["level"] == "bronze"
        assert alert["last_visit"] is None
        assert alert["preferences"]["interests"] == ["wine"]
        assert alert["recommended_categories"] == []
        assert receiver.bad_signatures == 0
        assert await _vip_alerts(db) == 1


async def test_consent_recognition_holds_on_every_phone_and_is_logged(
        api: Api, db: asyncpg.Connection) -> None:
    phone = await api.device(unique_token(), customer_id="C-R")
    tablet = await api.device(unique_token(), customer_id="C-R")
    (await api.call("PUT", "/v1/devices/me/consent", key=phone.token, json={
        "location": True, "push": True, "recognition": True})).ok(200)
    got = (await api.call("GET", "/v1/devices/me", key=tablet.token)).ok(200)
    assert got["consent"]["recognition"] is True
    assert await db.fetchval("SELECT count(*) FROM consent_log WHERE recognition") == 1
    bad = await api.call("PUT", "/v1/devices/me/consent", key=phone.token, json={
        "location": True, "push": True, "recognition": "yes"})
    assert bad.status == 400


def test_recognition_min_level_must_be_a_loyalty_level() -> None:
    from geopush.config import ConfigError, load_config

    assert load_config(environ={}).recognition.min_level == "gold"
    with pytest.raises(ConfigError, match="min_level"):
        load_config(environ={"GEOPUSH_RECOGNITION_MIN_LEVEL": "platinum"})
