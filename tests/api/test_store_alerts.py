"""Store alerts (SPEC section 15): queued with the event, POSTed signed, retried, refused
where they must not go, and listed for ops."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from geopush.alerts.outbox import enqueue_alert
from geopush.alerts.signing import sign, verify
from tests.alert_receiver import SIGNING_SECRET, AlertReceiver
from tests.api_client import Api
from tests.conftest import ADMIN_KEY
from tests.eventually import eventually

ALERTS = {"signing_secret": SIGNING_SECRET, "allow_private_addresses": True,
          "poll_interval_s": 0.05, "retry_base_s": 0.05, "retry_cap_s": 0.1}


@pytest.fixture
async def receiver() -> AsyncIterator[AlertReceiver]:
    r = AlertReceiver()
    await r.start()
    yield r
    await r.stop()


async def _until(check: Callable[[], Any], within_s: float = 20) -> None:
    await eventually(check, within_s)


async def _queue(db: asyncpg.Connection, store_id: str, **payload: Any) -> UUID | None:
    async with db.transaction():
        return await enqueue_alert(db, UUID(store_id), "service_recovery", payload)


def test_signature_is_hmac_of_t_dot_body_and_checked() -> None:
    import hashlib
    import hmac

    body = b'{"id":"x"}'
    header = sign("s" * 32, body, now=1_700_000_000)
    expected = hmac.new(b"s" * 32, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert verify("s" * 32, header, body, now=1_700_000_010)
    assert not verify("s" * 32, header, body + b" ", now=1_700_000_010)
    assert not verify("t" * 32, header, body, now=1_700_000_010)
    assert not verify("s" * 32, header, body, now=1_700_001_000)  # too old: a replay


async def test_alert_reaches_the_store_signed_after_retries_and_is_listed(
    start_server: Callable[..., Any], db: asyncpg.Connection, receiver: AlertReceiver,
) -> None:
    server = await start_server(alerts=ALERTS)
    receiver.fail_next = [503, 500]  # the store's system is down twice, then up
    async with Api(server.url, ADMIN_KEY) as api:
        store = await api.store(alert_url=receiver.url)
        assert store["alert_url"] == receiver.url
        alert_id = await _queue(db, store["id"], first_name="Marie", overall=1)
        assert alert_id is not None

        async def arrived() -> bool:
            return str(alert_id) in receiver.alerts

        await _until(arrived)
        got = receiver.alerts[str(alert_id)]
        assert got["type"] == "service_recovery"
        assert got["store_id"] == store["id"]
        assert got["first_name"] == "Marie" and got["overall"] == 1
        assert receiver.bad_signatures == 0

        async def listed_sent() -> bool:
            page = (await api.as_role("ops", "GET", f"/v1/alerts?store_id={store['id']}")
                    ).ok(200)
            return bool(page["items"]) and page["items"][0]["status"] == "sent"

        await _until(listed_sent)
        item = (await api.as_role("marketer", "GET", "/v1/alerts?status=sent")).ok(200)["items"][0]
        assert item["id"] == str(alert_id)
        assert item["attempts"] == 3
        assert "first_name" not in item  # the body (names, comments) is not listed
        bad = await api.as_role("ops", "GET", "/v1/alerts?status=lost")
        assert bad.status == 400 and "status" in str(bad.body)
        metrics = (await api.call("GET", "/metrics")).body
        assert "geopush_alerts_outbox_depth" in metrics
        assert 'geopush_alert_attempts_total{reason="",status="sent"}' in metrics


async def test_store_without_alert_url_gets_no_alert(
    api: Api, db: asyncpg.Connection,
) -> None:
    store = await api.store()
    assert await _queue(db, store["id"], overall=1) is None
    assert await db.fetchval("SELECT count(*) FROM store_alerts") == 0


@pytest.mark.parametrize("url", ["http://example.com/hook", "ftp://127.0.0.1/x",
                                 "https://user:pw@example.com/", "not a url", "https:///x"])
async def test_alert_url_must_be_https_or_loopback_http(api: Api, url: str) -> None:
    reply = await api.as_role("marketer", "POST", "/v1/stores", json={
        "external_id": "bad-url", "name": "S", "timezone": "UTC",
        "location": {"lat": 1, "lon": 1}, "alert_url": url})
    assert reply.status == 400
    assert "alert_url" in str(reply.body)


async def test_private_destination_refused_without_the_switch(
    start_server: Callable[..., Any], db: asyncpg.Connection, receiver: AlertReceiver,
) -> None:
    """Loopback is the machine itself: refused unless `allow_private_addresses`."""
    server = await start_server(alerts={**ALERTS, "allow_private_addresses": False})
    async with Api(server.url, ADMIN_KEY) as api:
        for url in (receiver.url, receiver.url.replace("127.0.0.1", "localhost")):
            store = await api.store(alert_url=url)
            alert_id = await _queue(db, store["id"], overall=1)

            async def failed(alert_id: UUID | None = alert_id) -> bool:
                return await db.fetchval(
                    "SELECT status FROM store_alerts WHERE alert_id = $1", alert_id) == "failed"

            await _until(failed)
            row = await db.fetchrow("SELECT reason, attempts FROM store_alerts"
                                    " WHERE alert_id = $1", alert_id)
            assert row["reason"] == "destination_refused" and row["attempts"] == 1
    assert receiver.alerts == {}


async def test_redirect_is_never_followed(
    start_server: Callable[..., Any], db: asyncpg.Connection, receiver: AlertReceiver,
) -> None:
    from aiohttp import web

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://10.0.0.1/internal")

    app = web.Application()
    app.router.add_post("/r", redirect)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        server = await start_server(alerts=ALERTS)
        async with Api(server.url, ADMIN_KEY) as api:
            store = await api.store(alert_url=f"http://127.0.0.1:{port}/r")
            alert_id = await _queue(db, store["id"], overall=1)

            async def failed() -> bool:
                return await db.fetchval(
                    "SELECT reason FROM store_alerts WHERE alert_id = $1", alert_id
                ) == "redirect_refused"

            await _until(failed)
    finally:
        await runner.cleanup()
