"""The active offers' keys each process keeps: an offer made, paused or deleted on one node
is decided (or not) by every node, and events no offer targets are still answered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from geopush.api.runtime import RUNTIME
from geopush.store.offer_keys import LiveOfferKeys
from tests.api_client import Api, walk
from tests.conftest import ADMIN_KEY, RunningServer, unique_token
from tests.eventually import eventually

LAT, LON = 45.50, -73.57


async def _until_version_passes(server: RunningServer, version: int) -> None:
    """Wait (bounded) until this server has re-read the keys after a change elsewhere."""
    keys = server.app[RUNTIME].offer_keys

    async def reloaded() -> bool:
        return bool(keys.version > version)

    await eventually(reloaded, what="the offer keys reloaded after a change on another node")


async def test_an_offer_made_on_another_node_is_decided_here(start_server: Any,
                                                             db: Any) -> None:
    here, there = await start_server(), await start_server()
    async with Api(here.url, ADMIN_KEY) as api, Api(there.url, ADMIN_KEY) as other:
        fence = await api.circle(LAT, LON, 100)
        version = here.app[RUNTIME].offer_keys.version
        offer = await other.offer(geofence_ids=[fence["id"]])
        await _until_version_passes(here, version)
        dev = await api.device(unique_token())
        reply = (await api.pings(dev, walk(LAT, LON, -400, 0, 5,
                                           datetime.now(UTC) - timedelta(minutes=2)))).ok(202)
        assert [e["type"] for e in reply["events"]] == ["enter"]
        assert await db.fetchval("SELECT count(*) FROM decisions WHERE offer_id = $1",
                                 offer["id"]) == 1

        version = here.app[RUNTIME].offer_keys.version
        (await other.as_role("marketer", "PATCH", f"/v1/offers/{offer['id']}",
                             json={"status": "paused"})).ok(200)
        await _until_version_passes(here, version)
        again = await api.device(unique_token())
        reply = (await api.pings(again, walk(LAT, LON, -400, 0, 5,
                                             datetime.now(UTC) - timedelta(minutes=2)))).ok(202)
        assert [e["type"] for e in reply["events"]] == ["enter"]
        assert await db.fetchval("SELECT count(*) FROM decisions") == 1


async def test_an_exit_no_offer_targets_is_answered_and_cancels_nothing(api: Api,
                                                                        db: Any) -> None:
    fence = await api.circle(LAT, LON, 100)
    await api.offer(geofence_ids=[fence["id"]])  # `enter` only
    dev = await api.device(unique_token())
    start = datetime.now(UTC) - timedelta(minutes=5)
    (await api.pings(dev, walk(LAT, LON, -400, 0, 5, start))).ok(202)
    out = (await api.pings(dev, walk(LAT, LON, 200, 600, 3, start + timedelta(minutes=2))
                           )).ok(202)
    assert [e["type"] for e in out["events"]] == ["exit"]
    assert await db.fetchval("SELECT count(*) FROM decisions") == 1


def test_unknown_keys_decide_everything() -> None:
    keys = LiveOfferKeys()
    assert keys.may_match([("exit", "g", None)])
    keys.keys = frozenset({("enter", "geofence:g"), ("dwell", "store:s")})
    assert keys.may_match([("enter", "g", None)])
    assert keys.may_match([("dwell", "h", "s")])
    assert not keys.may_match([("exit", "g", "s"), ("enter", "h", None)])
