"""SPEC section 10: POST /v1/devices is rate limited per app key and per client address,
with Retry-After, and the limits hold across processes sharing one database. Ping batches
are also limited per client address, against many invented devices behind one host."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.api_client import Api, Reply, daytime_zone
from tests.conftest import ADMIN_KEY, unique_token


def _registration() -> dict[str, Any]:
    return {"fcm_token": unique_token(), "platform": "android", "locale": "en",
            "timezone": daytime_zone()}


async def _register(api: Api, app_key: str, forwarded_for: str | None = None) -> Reply:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else None
    return await api.call("POST", "/v1/devices", key=app_key, json=_registration(),
                          headers=headers)


async def test_registrations_per_address_are_limited_across_two_servers(
    start_server: Callable[..., Any], db, mid_minute
) -> None:
    limits = {"register_rate_per_min": 5, "register_key_rate_per_min": 1000}
    one = await start_server(limits_clock=mid_minute, limits=limits)
    two = await start_server(limits_clock=mid_minute, limits=limits)
    async with Api(one.url, ADMIN_KEY) as a, Api(two.url, ADMIN_KEY) as b:
        app_key = await a.key("app")
        replies = [await (a if i % 2 else b).call("POST", "/v1/devices", key=app_key,
                                                  json=_registration()) for i in range(8)]
        assert [r.status for r in replies] == [201] * 5 + [429] * 3
        refused = replies[-1]
        assert refused.body["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        # Forging X-Forwarded-For does not make a new address: the peer is the client.
        assert (await _register(b, app_key, forwarded_for="203.0.113.9")).status == 429
    assert await db.fetchval("SELECT count(*) FROM devices") == 5


async def test_registrations_per_app_key_are_limited_whatever_the_address(
    start_server: Callable[..., Any], db, mid_minute
) -> None:
    # One trusted proxy in front: the client address is the last X-Forwarded-For entry.
    server = await start_server(limits={"register_rate_per_min": 1000,
                                        "register_key_rate_per_min": 3,
                                        "trusted_proxy_hops": 1},
                                limits_clock=mid_minute)
    async with Api(server.url, ADMIN_KEY) as api:
        app_key, other_key = await api.key("app"), (await api.call(
            "POST", "/v1/keys", key=ADMIN_KEY, json={"role": "app", "name": "other app"}
        )).ok(201)["key"]
        statuses = [(await _register(api, app_key, f"198.51.100.{i}")).status
                    for i in range(5)]
        assert statuses == [201, 201, 201, 429, 429]
        assert (await _register(api, other_key, "198.51.100.99")).status == 201


async def test_attackers_cannot_spend_the_registrations_of_genuine_installs(
    start_server: Callable[..., Any], db, mid_minute
) -> None:
    """Ten addresses registering all they may (the defaults) leave the app open to others:
    no budget is shared by every install of the app."""
    server = await start_server(limits={"register_rate_per_min": 60,
                                        "register_network_rate_per_min": 300,
                                        "register_key_rate_per_min": 0,
                                        "trusted_proxy_hops": 1},
                                limits_clock=mid_minute)
    async with Api(server.url, ADMIN_KEY) as api:
        app_key = await api.key("app")
        for attacker in range(10):
            for _ in range(60):
                (await _register(api, app_key, f"198.{attacker}.7.1")).ok(201)
            assert (await _register(api, app_key, f"198.{attacker}.7.1")).status == 429
        genuine = [(await _register(api, app_key, f"203.0.{i}.10")).status for i in range(8)]
        assert genuine == [201] * 8


async def test_one_network_shares_a_budget_across_its_addresses(
    start_server: Callable[..., Any], db, mid_minute
) -> None:
    server = await start_server(limits={"register_rate_per_min": 1000,
                                        "register_network_rate_per_min": 4,
                                        "trusted_proxy_hops": 1},
                                limits_clock=mid_minute)
    async with Api(server.url, ADMIN_KEY) as api:
        app_key = await api.key("app")
        rotating = [(await _register(api, app_key, f"192.0.2.{i}")).status for i in range(6)]
        assert rotating == [201] * 4 + [429] * 2
        assert (await _register(api, app_key, "192.0.3.1")).status == 201  # another /24
        v6 = [(await _register(api, app_key, f"2001:db8:1:{i:x}::1")).status for i in range(5)]
        assert v6 == [201] * 4 + [429]


async def test_address_limit_behind_a_trusted_proxy_uses_the_forwarded_address(
    start_server: Callable[..., Any], db, mid_minute
) -> None:
    server = await start_server(limits={"register_rate_per_min": 2,
                                        "register_key_rate_per_min": 1000,
                                        "trusted_proxy_hops": 1},
                                limits_clock=mid_minute)
    async with Api(server.url, ADMIN_KEY) as api:
        app_key = await api.key("app")
        # The client wrote the first entry itself; the proxy appended the real one.
        first = [(await _register(api, app_key, f"10.9.9.{i}, 192.0.2.1")).status
                 for i in range(3)]
        assert first == [201, 201, 429]
        assert (await _register(api, app_key, "192.0.2.2")).status == 201


async def test_many_devices_from_one_address_share_a_ping_budget(
    start_server: Callable[..., Any]
) -> None:
    server = await start_server(limits={"address_ping_rate_per_s": 0.5})  # bursts of 1.5
    async with Api(server.url, ADMIN_KEY) as api:
        devices = [await api.device(unique_token(), push=False) for _ in range(3)]
        replies = [await api.call("POST", "/v1/pings", key=d.token, json={"pings": []})
                   for d in devices]
        assert [r.status for r in replies] == [202, 429, 429]
        assert replies[1].body["error"]["message"] == "too many ping batches from this address"
        assert int(replies[1].headers["Retry-After"]) >= 1
