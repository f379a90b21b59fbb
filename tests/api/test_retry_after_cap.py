"""SPEC section 10: FCM's Retry-After is honoured up to `[fcm] max_retry_after_s`, never beyond.

A QUOTA_EXCEEDED answer pauses every sender through the `sender_pause` row, which survives
restarts: the cap applies when the row is written and again when it is read.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.api_client import Api
from tests.conftest import ADMIN_KEY, unique_token
from tests.delivery_scenario import attempts, finished_delivery, open_shop, sections, walk_in

CAP = {"fcm": {"max_retry_after_s": 1}}


async def test_a_billion_second_retry_after_waits_only_the_cap(
    start_server: Callable[..., Any], db, emulator
) -> None:
    server = await start_server(**sections(**CAP))
    async with Api(server.url, ADMIN_KEY) as api:
        shop = await open_shop(api)
        device = await api.device(unique_token("fail-quota_exceeded-1-ra1000000000-x"))
        await walk_in(api, shop, device)
        d = await finished_delivery(api, device, within=15)
        assert (d["status"], d["attempts"]) == ("sent", 2)
        assert [a.error for a in attempts(emulator, device.fcm_token)] == [
            "QUOTA_EXCEEDED", None]
        until = await db.fetchval("SELECT until FROM sender_pause")
        assert until <= datetime.now(UTC) + timedelta(seconds=1)


async def test_a_pause_recorded_beyond_the_cap_is_cut_down_when_read(
    start_server: Callable[..., Any], db
) -> None:
    # Left by an earlier run (or an earlier version without the cap): ten years.
    await db.execute("INSERT INTO sender_pause (id, until) VALUES"
                     " (true, now() + interval '10 years')")
    server = await start_server(**sections(**CAP))
    async with Api(server.url, ADMIN_KEY) as api:
        shop = await open_shop(api)
        device = await api.device(unique_token("paused"))
        await walk_in(api, shop, device)
        d = await finished_delivery(api, device, within=15)
        assert (d["status"], d["attempts"]) == ("sent", 1)
    assert await db.fetchval("SELECT until FROM sender_pause") < datetime.now(UTC)
