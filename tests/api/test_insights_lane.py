"""Marketers' basket queries cannot pile up: a bounded lane, stopped when the client leaves."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import aiohttp
import psutil

from geopush.api.runtime import RUNTIME
from tests.api_client import Api, iso
from tests.conftest import ADMIN_KEY
from tests.eventually import eventually

CATEGORIES = [f"cat{i}" for i in range(40)]
# Thresholds so loose that mining these baskets runs far longer than the test.
HEAVY = "/v1/insights/basket?min_support=0.0005&min_confidence=0&max_len=6"


def _baskets(n: int) -> bytes:
    rng = random.Random(5)
    ts = iso(datetime.now(UTC) - timedelta(days=1))
    lines = ["transaction_id,customer_id,store_external_id,ts,amount,category,line"]
    for t in range(n):
        for line, category in enumerate(rng.sample(CATEGORIES, 14), start=1):
            lines.append(f"T{t},C{t % 50},,{ts},1,{category},{line}")
    return "\n".join(lines).encode()


def _miners() -> set[int]:
    """Live child processes of this test process that run mining jobs."""
    found = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if "spawn" in " ".join(child.cmdline()):
                found.add(child.pid)
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            pass  # ended between the listing and the look: not live
    return found


async def test_a_full_lane_is_429_and_a_query_whose_client_left_stops(start_server) -> None:
    server = await start_server(insights={"max_itemsets": 10**9})
    async with Api(server.url, ADMIN_KEY) as api:
        (await api.as_role("marketer", "POST", "/v1/transactions/import", data=_baskets(6000),
                           headers={"Content-Type": "text/csv"})).ok(200)
        marketer = await api.key("marketer")

        async def recomputed() -> bool:
            # The import's background recompute (its own child, kept for the next one).
            reply = await api.as_role("marketer", "GET", "/v1/insights/cross-sell")
            return reply.ok(200)["computed_at"] is not None

        await eventually(recomputed, within=60)
        before = _miners()

        async def leave_after(seconds: float) -> None:
            timeout = aiohttp.ClientTimeout(total=seconds)
            async with aiohttp.ClientSession(timeout=timeout) as s:
                try:
                    async with s.get(server.url + HEAVY,
                                     headers={"Authorization": f"Bearer {marketer}"}) as r:
                        await r.read()
                except TimeoutError:
                    return  # the marketer closed the tab
            raise AssertionError("the heavy query finished; make it heavier")

        leaving = [asyncio.create_task(leave_after(4.0)) for _ in range(2)]
        miner = server.app[RUNTIME].miner

        async def lane_full() -> bool:
            """both heavy queries are in the lane (one running, one waiting)"""
            return bool(miner.queries >= 2)

        await eventually(lane_full, within=3)
        busy = await api.as_role("marketer", "GET", "/v1/insights/basket")
        assert busy.status == 429 and int(busy.headers["Retry-After"]) >= 1
        async def started() -> set[int] | None:
            return _miners() - before or None

        running = await eventually(started, within=20)
        await asyncio.gather(*leaving)
        # Both queries stopped: the running one's child is ended, the queued one never ran.
        async def ended() -> bool:
            return not (_miners() & running)

        await eventually(ended, within=20)
        # And the lane takes a new query.
        answer = (await api.as_role("marketer", "GET", "/v1/insights/basket?min_support=0.5"))
        assert answer.status == 200
