"""API keys: made by an admin and shown once, listed without secrets, revoked everywhere."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.api.test_crm_imports import run_cli
from tests.api_client import Api
from tests.conftest import ADMIN_KEY
from tests.eventually import eventually


async def test_list_never_shows_the_key(api: Api, db) -> None:
    made = []
    for role in ("marketer", "ops", "app"):
        made.append((await api.call("POST", "/v1/keys", key=ADMIN_KEY,
                                    json={"role": role, "name": f"{role} team"})).ok(201))
    listed = (await api.call("GET", "/v1/keys?limit=2", key=ADMIN_KEY)).ok(200)
    assert [k["id"] for k in listed["items"]] == [m["id"] for m in made[:2]]
    rest = (await api.call("GET", f"/v1/keys?cursor={listed['next_cursor']}",
                           key=ADMIN_KEY)).ok(200)
    assert [k["id"] for k in rest["items"]] == [made[2]["id"]]
    assert rest["next_cursor"] is None
    item = listed["items"][0]
    assert set(item) == {"id", "name", "role", "created_at", "revoked_at"}
    assert item["name"] == "marketer team" and item["revoked_at"] is None
    text = str(listed) + str(rest)
    stored_hash = await db.fetchval("SELECT key_hash FROM api_keys LIMIT 1")
    for m in made:
        assert m["key"] not in text
    assert stored_hash.hex() not in text


async def test_only_admin_manages_keys(api: Api) -> None:
    for method, path in (("GET", "/v1/keys"), ("POST", "/v1/keys"),
                         ("DELETE", "/v1/keys/00000000-0000-0000-0000-000000000000")):
        reply = await api.as_role("marketer", method, path, json={"role": "ops"})
        assert reply.status == 403, (method, reply)
        reply = await api.call(method, path)
        assert reply.status == 401


async def test_revoke_unknown_or_malformed_key_is_404(api: Api) -> None:
    for ident in ("00000000-0000-0000-0000-000000000000", "nope"):
        reply = await api.call("DELETE", f"/v1/keys/{ident}", key=ADMIN_KEY)
        assert reply.status == 404 and reply.body["error"]["code"] == "not_found"


async def test_revoked_key_is_refused_by_every_process_within_1s(start_server) -> None:
    """Two servers on one database: the key works on both, is revoked through one, and the
    other (which has just used it, so it is cached there) refuses it within a second."""
    first = await start_server()
    second = await start_server(server={"run_sender": False})
    async with Api(first.url, ADMIN_KEY) as one, Api(second.url, ADMIN_KEY) as two:
        key = (await one.call("POST", "/v1/keys", key=ADMIN_KEY,
                              json={"role": "marketer", "name": "leaver"})).ok(201)
        for client in (one, two):
            (await client.call("GET", "/v1/stores", key=key["key"])).ok(200)
        revoked = (await one.call("DELETE", f"/v1/keys/{key['id']}", key=ADMIN_KEY)).ok(200)
        assert revoked["id"] == key["id"] and revoked["revoked_at"]
        started = time.monotonic()
        while True:
            reply = await two.call("GET", "/v1/stores", key=key["key"])
            if reply.status == 401:
                break
            assert reply.status == 200
            assert time.monotonic() - started < 1.0, "still accepted after 1 s"
            await asyncio.sleep(0.02)
        assert (await one.call("GET", "/v1/stores", key=key["key"])).status == 401
        listed = (await two.call("GET", "/v1/keys", key=ADMIN_KEY)).ok(200)["items"]
        assert listed[0]["revoked_at"] == revoked["revoked_at"]
        # Revoking again changes nothing.
        again = (await two.call("DELETE", f"/v1/keys/{key['id']}", key=ADMIN_KEY)).ok(200)
        assert again["revoked_at"] == revoked["revoked_at"]


async def test_cli_revokes_a_key(api: Api, database_url: str, tmp_path: Path) -> None:
    key = (await api.call("POST", "/v1/keys", key=ADMIN_KEY,
                          json={"role": "ops", "name": "cli"})).ok(201)
    (await api.call("GET", "/v1/deliveries", key=key["key"])).ok(200)
    rc, out, err = await run_cli(database_url, tmp_path, "keys", "revoke", key["id"])
    assert rc == 0, err
    assert key["id"] in out

    async def refused() -> bool:
        """the revoked key is refused (SPEC section 7: by every process within 1 s)"""
        return (await api.call("GET", "/v1/deliveries", key=key["key"])).status == 401

    await eventually(refused, within=1.0)
    rc, _, err = await run_cli(database_url, tmp_path, "keys", "revoke",
                               "00000000-0000-0000-0000-000000000000")
    assert rc != 0 and "no key" in err
