"""What one phone can make geopush store (SPEC section 10): bounded, deduplicated, pruned."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest

from geopush.store.database import create_pool
from geopush.store.retention import retention_round
from tests.api_client import Api
from tests.conftest import unique_token


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, 2)
    yield pool
    await pool.close()


async def _consent(api: Api, token: str, **body: Any) -> Any:
    return await api.call("PUT", "/v1/devices/me/consent", key=token,
                          json={"location": True, "push": True, **body})


async def test_a_consent_names_a_bounded_number_of_categories(api: Api, db) -> None:
    phone = await api.device(unique_token(), location=False, push=False)
    reply = await _consent(api, phone.token, categories=[f"c{i}" for i in range(101)])
    assert reply.status == 400 and reply.body["error"]["details"][0]["field"] == "categories"
    assert await db.fetchval("SELECT count(*) FROM consent_log") == 0
    ok = (await _consent(api, phone.token, categories=["coffee", "tea", "coffee"])).ok(200)
    assert ok["consent"]["categories"] == ["coffee", "tea"]


async def test_an_unchanged_consent_is_not_logged_again(api: Api, db) -> None:
    phone = await api.device(unique_token(), location=False, push=False)
    for _ in range(20):
        (await _consent(api, phone.token, categories=["coffee"])).ok(200)
    (await _consent(api, phone.token, categories=["coffee"], leaderboard=True)).ok(200)
    (await _consent(api, phone.token, categories=["coffee"], leaderboard=True)).ok(200)
    (await _consent(api, phone.token, categories=None)).ok(200)
    assert await db.fetchval("SELECT count(*) FROM consent_log") == 3


async def test_old_consent_changes_are_pruned_but_each_devices_latest_stays(
    api: Api, db, pool, make_config: Callable[..., Any]
) -> None:
    phones = [await api.device(unique_token(), location=False, push=False) for _ in range(2)]
    for phone in phones:
        (await _consent(api, phone.token)).ok(200)
    (await _consent(api, phones[0].token, push=False)).ok(200)
    await db.execute("UPDATE consent_log SET changed_at = now() - interval '500 days'")
    done = await retention_round(pool, make_config(privacy={"consent_log_retention_days": 400}))
    assert done.consent_log == 1
    kept = await db.fetch("SELECT device_id::text, push FROM consent_log ORDER BY id")
    assert [(r["device_id"], r["push"]) for r in kept] == [
        (phones[1].device_id, True), (phones[0].device_id, False)]
