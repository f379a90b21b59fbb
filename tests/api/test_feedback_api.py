"""POST /v1/feedback (SPEC section 14): only for a verified visit, once per visit, and bad
input is a 4xx naming the field that changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.api_client import Api
from tests.conftest import unique_token
from tests.service_scenario import rated_store, visit


async def _answers(db: asyncpg.Connection) -> int:
    return await db.fetchval("SELECT count(*) FROM feedback_responses")


async def test_only_a_verified_visit_may_be_rated_and_only_once(
    api: Api, db: asyncpg.Connection,
) -> None:
    shop = await rated_store(api)
    other = await rated_store(api, north_km=5)
    phone = await api.device(unique_token("fa"))
    body = {"store_id": shop.store["id"], "overall": 4}
    reply = await api.call("POST", "/v1/feedback", key=phone.token, json=body)
    assert reply.status == 403 and reply.body["error"]["code"] == "no_visit"

    # Walking past without staying is not a verified visit.
    await visit(api, shop, phone, datetime.now(UTC) - timedelta(minutes=30), stay=False)
    reply = await api.call("POST", "/v1/feedback", key=phone.token, json=body)
    assert reply.status == 403

    await visit(api, shop, phone, datetime.now(UTC) - timedelta(minutes=20))
    first = (await api.call("POST", "/v1/feedback", key=phone.token, json=body)).ok(201)
    assert "case_id" not in first  # 4/5 opens no case
    again = await api.call("POST", "/v1/feedback", key=phone.token,
                           json={**body, "overall": 1})
    assert again.status == 409
    # Another store this phone never stayed in.
    reply = await api.call("POST", "/v1/feedback", key=phone.token,
                           json={"store_id": other.store["id"], "overall": 5})
    assert reply.status == 403
    # Another phone cannot rate this phone's visit.
    stranger = await api.device(unique_token("fa"))
    reply = await api.call("POST", "/v1/feedback", key=stranger.token, json=body)
    assert reply.status == 403
    # A new visit may be rated again.
    await visit(api, shop, phone, datetime.now(UTC) - timedelta(minutes=10))
    (await api.call("POST", "/v1/feedback", key=phone.token, json=body)).ok(201)
    assert await _answers(db) == 2
    assert await db.fetchval("SELECT count(*) FROM service_cases") == 0


async def test_a_visit_older_than_the_window_cannot_be_rated(
    api: Api, db: asyncpg.Connection,
) -> None:
    shop = await rated_store(api)
    phone = await api.device(unique_token("fa"))
    await visit(api, shop, phone, datetime.now(UTC) - timedelta(hours=2))
    await db.execute("UPDATE events SET ts = ts - interval '8 days'")
    reply = await api.call("POST", "/v1/feedback", key=phone.token,
                           json={"store_id": shop.store["id"], "overall": 3})
    assert reply.status == 403


@pytest.mark.parametrize(("change", "field"), [
    ({"overall": 6}, "overall"),
    ({"overall": 0}, "overall"),
    ({"overall": 2.5}, "overall"),
    ({"overall": "5"}, "overall"),
    ({"overall": None}, "overall"),
    ({"store_id": "not-an-id"}, "store_id"),
    ({"dimensions": {"friendliness": 3}}, "dimensions.friendliness"),
    ({"dimensions": {"empathy": 9}}, "dimensions.empathy"),
    ({"expectations": {"tangibles": 0}}, "expectations.tangibles"),
    ({"expectations": [1, 2]}, "expectations"),
    ({"comment": "x" * 1001}, "comment"),
    ({"comment": 42}, "comment"),
    ({"delivery_id": "nope"}, "delivery_id"),
    ({"mood": "grumpy"}, "mood"),
])
async def test_bad_input_names_the_field_and_changes_nothing(
    api: Api, db: asyncpg.Connection, change: dict[str, Any], field: str,
) -> None:
    shop = await rated_store(api)
    phone = await api.device(unique_token("fa"))
    await visit(api, shop, phone)
    body = {"store_id": shop.store["id"], "overall": 1, **change}
    reply = await api.call("POST", "/v1/feedback", key=phone.token, json=body)
    assert 400 <= reply.status < 500, reply
    assert field in str(reply.body["error"]), reply.body
    assert await _answers(db) == 0
    assert await db.fetchval("SELECT count(*) FROM service_cases") == 0


async def test_comment_of_1000_characters_is_kept_and_never_logged(
    api: Api, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture,
) -> None:
    shop = await rated_store(api)
    phone = await api.device(unique_token("fa"))
    await visit(api, shop, phone)
    comment = ("Le caissier était très impoli " * 40)[:1000]
    with caplog.at_level("DEBUG"):
        (await api.call("POST", "/v1/feedback", key=phone.token, json={
            "store_id": shop.store["id"], "overall": 2, "comment": comment})).ok(201)
    assert await db.fetchval("SELECT comment FROM feedback_responses") == comment
    assert "impoli" not in caplog.text


async def test_cases_and_service_need_a_marketer_or_ops_key(api: Api) -> None:
    for path in ("/v1/cases", "/v1/service", "/v1/alerts"):
        assert (await api.as_role("app", "GET", path)).status == 403
        assert (await api.call("GET", path)).status == 401
    assert (await api.as_role("ops", "GET", "/v1/service?days=0")).status == 400
    assert (await api.as_role("ops", "GET", "/v1/cases?status=lost")).status == 400
    missing = await api.as_role("ops", "PATCH", "/v1/cases/00000000-0000-0000-0000-000000000001",
                                json={"status": "resolved"})
    assert missing.status == 404
