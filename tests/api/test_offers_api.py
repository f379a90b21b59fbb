"""Offers over HTTP: validation, pause and resume, delete, pagination."""

from __future__ import annotations

import pytest

from tests.api_client import EN_FR, Api


@pytest.fixture
async def fence(api: Api) -> dict:
    return await api.circle(40.0, -74.0, 100)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"trigger": "walk_by"}, "trigger"),
        ({"control_pct": 60}, "control_pct"),
        ({"daily_window": {"start": "9h", "end": "17:00"}}, "daily_window"),
        ({"message": {"default_locale": "en", "translations": {"fr": {"title": "t",
                                                                      "body": "b"}}}},
         "message"),
        ({"starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z"}, "ends_at"),
        ({"control_percent": 10}, "control_percent"),
    ],
)
async def test_invalid_offers_are_400_naming_the_field(api: Api, fence: dict, fields: dict,
                                                       field: str) -> None:
    body = {"trigger": "enter", "message": EN_FR, "geofence_ids": [fence["id"]], **fields}
    reply = await api.as_role("marketer", "POST", "/v1/offers", json=body)
    assert reply.status == 400, reply.body
    assert reply.body["error"]["details"][0]["field"].startswith(field)


@pytest.mark.parametrize("link", ["javascript:alert(1)", "JavaScript:alert(1)",
                                  "data:text/html,<b>x</b>", "http://example.test/o",
                                  "intent://scan/#Intent;scheme=zxing;end"])
async def test_a_deeplink_outside_the_configured_schemes_is_refused(api: Api, fence: dict,
                                                                    link: str) -> None:
    body = {"trigger": "enter", "message": EN_FR, "geofence_ids": [fence["id"]]}
    reply = await api.as_role("marketer", "POST", "/v1/offers", json={**body, "deeplink": link})
    assert reply.status == 400, reply.body
    assert reply.body["error"]["details"][0]["field"] == "deeplink"
    offer = await api.offer(geofence_ids=[fence["id"]], deeplink="shop://offers/1")
    reply = await api.as_role("marketer", "PATCH", f"/v1/offers/{offer['id']}",
                              json={"deeplink": link})
    assert reply.status == 400 and reply.body["error"]["details"][0]["field"] == "deeplink"
    listed = (await api.as_role("marketer", "GET", f"/v1/offers/{offer['id']}")).ok(200)
    assert listed["deeplink"] == "shop://offers/1"
    assert (await api.as_role("marketer", "GET", "/v1/offers")).ok(200)["items"] == [listed]


async def test_unknown_target_is_422(api: Api) -> None:
    reply = await api.as_role("marketer", "POST", "/v1/offers", json={
        "trigger": "enter", "message": EN_FR,
        "geofence_ids": ["00000000-0000-0000-0000-000000000000"]})
    assert reply.status == 422 and reply.body["error"]["code"] == "unknown_target"


async def test_pause_resume_edit_delete_and_list(api: Api, fence: dict) -> None:
    offer = await api.offer(geofence_ids=[fence["id"]], priority=3, name="Coffee")
    assert offer["status"] == "active" and offer["cooldown_s"] == 86400
    assert offer["ttl_s"] == 900 and offer["control_pct"] == 0
    path = f"/v1/offers/{offer['id']}"
    paused = (await api.as_role("marketer", "PATCH", path, json={"status": "paused"})).ok(200)
    assert paused["status"] == "paused" and paused["priority"] == 3
    edited = (await api.as_role("marketer", "PATCH", path,
                                json={"status": "active", "ttl_s": 60})).ok(200)
    assert (edited["status"], edited["ttl_s"]) == ("active", 60)
    bad = await api.as_role("marketer", "PATCH", path, json={"geofence_ids": []})
    assert bad.status == 400  # no target left
    for _ in range(3):
        await api.offer(geofence_ids=[fence["id"]])
    first = (await api.as_role("marketer", "GET", "/v1/offers?limit=2")).ok(200)
    rest = (await api.as_role("ops", "GET",
                              f"/v1/offers?limit=2&cursor={first['next_cursor']}")).ok(200)
    assert len(first["items"]) + len(rest["items"]) == 4 and rest["next_cursor"] is None
    assert (await api.as_role("marketer", "DELETE", path)).status == 204
    assert (await api.as_role("marketer", "GET", path)).status == 404
    assert (await api.as_role("ops", "POST", "/v1/offers", json={})).status == 403


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        # Where the request model and the hand-written checks behind it disagreed, the one
        # model now says what SPEC section 4 wants: no empty deeplink, no control character
        # in a notification, no null for a flag, and dotted paths for list items.
        ({"deeplink": ""}, "deeplink", "must be a URI of at most 2048 characters"),
        ({"message": {"default_locale": "en",
                      "translations": {"en": {"title": "a\x07b", "body": "b"}}}},
         "message.translations.en.title", "must not contain control characters"),
        ({"allow_recent_buyers": None}, "allow_recent_buyers", "must be true or false"),
        ({"store_ids": [""]}, "store_ids.0", "String should have at least 1 character"),
        ({"segments": ["vip"]}, "segments.0", None),
    ],
)
async def test_one_offer_model_settles_what_the_two_checks_disagreed_on(
        api: Api, fence: dict, fields: dict, field: str, message: str | None) -> None:
    body = {"trigger": "enter", "message": EN_FR, "geofence_ids": [fence["id"]], **fields}
    reply = await api.as_role("marketer", "POST", "/v1/offers", json=body)
    assert reply.status == 400, reply.body
    detail = reply.body["error"]["details"][0]
    assert detail["field"] == field
    if message is not None:
        assert detail["message"] == message
    assert (await api.as_role("marketer", "GET", "/v1/offers")).ok(200)["items"] == []


async def test_every_problem_of_an_offer_body_is_listed_at_once(api: Api, fence: dict) -> None:
    reply = await api.as_role("marketer", "POST", "/v1/offers", json={
        "trigger": "enter", "geofence_ids": [fence["id"]], "control_pct": 60,
        "message": {"default_locale": "en", "translations": {"en": {"title": "T", "body": "B"},
                                                             "e n": {"title": "T", "body": "B"}}},
        "daily_window": {"start": "9:00", "end": "17:00"}, "deeplink": "offers/1"})
    assert reply.status == 400, reply.body
    assert sorted(d["field"] for d in reply.body["error"]["details"]) == [
        "control_pct", "daily_window.start", "deeplink", "message.translations.e n"]
    offer = await api.offer(geofence_ids=[fence["id"]])
    patched = await api.as_role("marketer", "PATCH", f"/v1/offers/{offer['id']}",
                                json={"daily_window": {"start": "09:00", "end": "09:00"}})
    assert patched.status == 400 and patched.body["error"]["details"] == [
        {"field": "daily_window",
         "message": "start and end are the same; use null for the whole day"}]
