"""Service data under erasure and retention (SPEC sections 10 and 14): comments go, answers,
cases and store alerts lose who they were about, scores stay for the gap."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg

from geopush.config import Config
from geopush.store.database import create_pool
from geopush.store.retention import retention_round
from tests.api_client import Api
from tests.conftest import ADMIN_KEY, unique_token
from tests.loyalty_scenario import import_customers
from tests.service_scenario import rated_store, visit


async def _rated_badly(api: Api, customer_id: str) -> tuple[Any, Any]:
    # No [alerts] signing_secret on this server: the alert stays queued, as a store's
    # system that is down would leave it.
    shop = await rated_store(api, alert_url="https://store.example/alerts")
    phone = await api.device(unique_token("priv"), customer_id=customer_id)
    await visit(api, shop, phone)
    answer = (await api.call("POST", "/v1/feedback", key=phone.token, json={
        "store_id": shop.store["id"], "overall": 1, "comment": "Rude cashier, ask for Jo",
        "dimensions": {"empathy": 1}})).ok(201)
    assert answer["case_id"]
    return shop, phone


async def _identified(db: asyncpg.Connection) -> dict[str, int]:
    return {
        "answers": await db.fetchval("SELECT count(*) FROM feedback_responses WHERE"
                                     " device_id IS NOT NULL OR customer_id IS NOT NULL"
                                     " OR comment IS NOT NULL"),
        "cases": await db.fetchval("SELECT count(*) FROM service_cases WHERE"
                                   " device_id IS NOT NULL OR customer_id IS NOT NULL"),
        "alerts": await db.fetchval("SELECT count(*) FROM store_alerts WHERE"
                                    " device_id IS NOT NULL OR customer_id IS NOT NULL"
                                    " OR body::text LIKE '%Rude%'"),
    }


async def test_erasing_the_device_strips_answers_cases_and_unsent_alerts(
    api: Api, db: asyncpg.Connection,
) -> None:
    await import_customers(api, [("C-SVC-1", "Jo")])
    _shop, phone = await _rated_badly(api, "C-SVC-1")
    assert await _identified(db) == {"answers": 1, "cases": 1, "alerts": 1}
    assert (await api.call("DELETE", "/v1/devices/me", key=phone.token)).status == 204
    assert await _identified(db) == {"answers": 0, "cases": 0, "alerts": 0}
    alert = await db.fetchrow("SELECT status, reason FROM store_alerts")
    assert (alert["status"], alert["reason"]) == ("failed", "erased")
    # The score still counts for the store's gap.
    service = (await api.as_role("ops", "GET", "/v1/service")).ok(200)
    assert service["stores"][0]["dimensions"][0]["perception"] == 1.0


async def test_erasing_the_customer_strips_them_too(api: Api, db: asyncpg.Connection) -> None:
    await import_customers(api, [("C-SVC-2", "Jo")])
    await _rated_badly(api, "C-SVC-2")
    assert (await api.as_role("marketer", "DELETE", "/v1/customers/C-SVC-2")).status == 204
    assert await db.fetchval("SELECT count(*) FROM feedback_responses"
                             " WHERE customer_id IS NOT NULL OR comment IS NOT NULL") == 0
    assert await db.fetchval("SELECT count(*) FROM service_cases"
                             " WHERE customer_id IS NOT NULL") == 0
    assert await db.fetchval("SELECT count(*) FROM store_alerts"
                             " WHERE customer_id IS NOT NULL OR body::text LIKE '%Rude%'") == 0


async def test_retention_prunes_old_service_data(
    start_server: Callable[..., Any], database_url: str, db: asyncpg.Connection,
    make_config: Callable[..., Config],
) -> None:
    server = await start_server()
    async with Api(server.url, ADMIN_KEY) as api:
        await _rated_badly(api, "C-SVC-3")
    await db.execute("UPDATE store_alerts SET status = 'failed'")
    config = make_config()
    pool = await create_pool(database_url, 2)
    try:
        done = await retention_round(pool, config)
        assert (done.feedback_answers, done.service_cases, done.store_alerts) == (0, 0, 0)
        await db.execute("UPDATE feedback_responses SET created_at = now() - interval '366 days'")
        await db.execute("UPDATE service_cases SET opened_at = now() - interval '32 days'")
        await db.execute("UPDATE store_alerts SET created_at = now() - interval '31 days'")
        done = await retention_round(pool, config)
    finally:
        await pool.close()
    assert (done.feedback_answers, done.service_cases, done.store_alerts) == (1, 1, 1)
    assert await _identified(db) == {"answers": 0, "cases": 0, "alerts": 0}
    assert await db.fetchval("SELECT overall FROM feedback_responses") == 1
