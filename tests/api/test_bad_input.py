"""Bad input never gets a 500: every endpoint answers malformed requests with a 4xx JSON error
and changes nothing."""

from __future__ import annotations

import pytest

from tests.api_client import Api
from tests.conftest import unique_token

JUNK_BODIES = [None, "[]", "7", '"text"', "{", '{"a": NaN}', "null", '{"name": null}',
               '{"geometry": 5, "name": ["x"]}', '{"trigger": 1, "message": "x"}',
               '{"location": {"lat": "x"}}', '{"role": {"admin": 1}}',
               '{"pings": [{"lat": 1e400}]}', '{"fcm_token": 12, "platform": "fax"}',
               '{"lat": 9999999999999999999999999999}']

ROUTES = [
    ("POST", "/v1/keys", "admin"),
    ("POST", "/v1/devices", "app"),
    ("POST", "/v1/stores", "marketer"),
    ("PATCH", "/v1/stores/{id}", "marketer"),
    ("POST", "/v1/geofences", "marketer"),
    ("PATCH", "/v1/geofences/{id}", "marketer"),
    ("POST", "/v1/geofences/import", "marketer"),
    ("POST", "/v1/offers", "marketer"),
    ("PATCH", "/v1/offers/{id}", "marketer"),
    ("POST", "/v1/customers/import", "marketer"),
    ("POST", "/v1/transactions/import", "marketer"),
    ("POST", "/v1/segments/recompute", "marketer"),
    ("POST", "/v1/deliveries/{id}/retry", "ops"),
    # Loyalty and baskets (SPEC sections 11 and 12).
    ("POST", "/v1/challenges", "marketer"),
    ("PATCH", "/v1/challenges/{id}", "marketer"),
    ("POST", "/v1/customers/{id}/points", "marketer"),
    ("POST", "/v1/insights/recompute", "marketer"),
]
DEVICE_ROUTES = [
    ("PATCH", "/v1/devices/me"),
    ("PUT", "/v1/devices/me/consent"),
    ("POST", "/v1/pings"),
    ("POST", "/v1/deliveries/{id}/opened"),
    ("POST", "/v1/deliveries/{id}/redeemed"),
    ("GET", "/v1/devices/me/loyalty"),
    ("GET", "/v1/leaderboard"),
]
IDS = ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "%00", "1" * 300]


def _assert_clean(reply, what: str) -> None:
    assert 400 <= reply.status < 500 or reply.status in (200, 201, 202, 204), (what, reply)
    if reply.status >= 400:
        assert isinstance(reply.body, dict) and set(reply.body["error"]) == {
            "code", "message", "details"}, (what, reply.body)


@pytest.mark.parametrize(("method", "path", "role"), ROUTES)
async def test_junk_to_every_role_endpoint(api: Api, method: str, path: str, role: str) -> None:
    key = await api.key(role)
    for ident in IDS[:2]:
        for body in JUNK_BODIES:
            reply = await api.call(method, path.replace("{id}", ident), key=key, data=body,
                                   headers={"Content-Type": "application/json"})
            _assert_clean(reply, f"{method} {path} {ident} {body!r}")
            assert reply.status != 201, (path, body)


async def test_junk_to_every_device_endpoint(api: Api) -> None:
    dev = await api.device(unique_token())
    for method, path in DEVICE_ROUTES:
        for ident in IDS:
            for body in JUNK_BODIES:
                reply = await api.call(method, path.replace("{id}", ident), key=dev.token,
                                       data=body, headers={"Content-Type": "application/json"})
                _assert_clean(reply, f"{method} {path} {body!r}")


@pytest.mark.parametrize("path", [
    "/v1/stores", "/v1/geofences", "/v1/offers", "/v1/deliveries", "/v1/segments",
    "/v1/customers/{id}", "/v1/stores/{id}", "/v1/geofences/{id}", "/v1/offers/{id}",
    "/v1/offers/{id}/stats", "/v1/deliveries/{id}", "/v1/ops/summary",
    "/v1/challenges", "/v1/challenges/{id}", "/v1/customers/{id}/points", "/v1/loyalty/summary",
    "/v1/insights/upsell", "/v1/insights/cross-sell",
])
async def test_junk_queries_and_ids(api: Api, path: str) -> None:
    key = await api.key("admin")
    for ident in IDS:
        for query in ("", "?limit=abc", "?limit=-1", "?limit=99999", "?cursor=garbage",
                      "?cursor=W10=", "?status=nope&offer_id=x&device_id=y&hours=q"):
            reply = await api.call("GET", path.replace("{id}", ident) + query, key=key)
            _assert_clean(reply, f"GET {path} {ident} {query}")


async def test_bad_input_changed_nothing(api: Api, db) -> None:
    key = await api.key("marketer")
    for method, path, _ in ROUTES[2:9]:
        for body in JUNK_BODIES:
            await api.call(method, path.replace("{id}", IDS[1]), key=key, data=body,
                           headers={"Content-Type": "application/json"})
    for table in ("stores", "geofences", "offers", "customers", "transactions"):
        assert await db.fetchval(f"SELECT count(*) FROM {table}") == 0, table


@pytest.mark.parametrize("size", [8 * 1024 + 1, 60 * 1024])
async def test_an_overlong_url_gets_a_json_error(api: Api, size: int) -> None:
    path = "/v1/stores?q=" + "x" * (size - len("/v1/stores?q="))
    reply = await api.as_role("marketer", "GET", path)
    assert reply.status == 414
    assert reply.body["error"]["code"] == "uri_too_long"
    assert (await api.as_role("marketer", "GET", "/v1/stores?q=" + "x" * 7000)).status == 200
