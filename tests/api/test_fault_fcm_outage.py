"""Fault: the FCM endpoint goes away for a while. Deliveries wait, then go: none lost, none
sent twice.

A dedicated FCM emulator is stopped (its port closed: every send is a connection error)
while phones walk into a shop, then started again on the same port with the same state.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from geopush.emulator.credentials import write_service_account
from geopush.emulator.thread import EmulatorThread
from tests.api_client import Api
from tests.conftest import ADMIN_KEY, PROJECT_ID
from tests.delivery_scenario import deliveries_of, open_shop, sections, walk_in
from tests.eventually import eventually


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_fcm_down_for_a_while_deliveries_wait_then_go_none_lost_none_twice(
    start_server: Callable[..., Any], tmp_path: Path, report: Callable[[str], None],
) -> None:
    port = _free_port()
    first = EmulatorThread(port=port).start()
    account = write_service_account(tmp_path / "sa.json", first.token_uri, PROJECT_ID)
    # Enough attempts, with short backoff, to outlast the outage below (SPEC section 6:
    # network errors are retried up to max_attempts).
    server = await start_server(**sections(fcm={
        "credentials_file": str(account), "endpoint": first.base_url,
        "retry_base_s": 0.05, "retry_cap_s": 0.5, "max_attempts": 50}))
    second: EmulatorThread | None = None
    try:
        async with Api(server.url, ADMIN_KEY) as api:
            shop = await open_shop(api)

            async def walk_in_phones(prefix: str, n: int) -> list[Any]:
                phones = [await api.device(f"{prefix}-{i}") for i in range(n)]
                for phone in phones:
                    await walk_in(api, shop, phone)
                return phones

            async def statuses(phones: list[Any]) -> list[str]:
                found = []
                for phone in phones:
                    items = await deliveries_of(api, phone)
                    found += [d["status"] for d in items]
                return found

            async def wait_sent(phones: list[Any], within: float) -> None:
                async def all_sent() -> bool:
                    return await statuses(phones) == ["sent"] * len(phones)

                await eventually(all_sent, within, every=0.1)

            before = await walk_in_phones("fcm-up", 3)
            await wait_sent(before, 20)

            first.stop()  # the endpoint is down: connection refused
            during = await walk_in_phones("fcm-down", 5)

            async def each_retried() -> list[Any]:
                """every delivery queued while FCM is down was tried, then tried again"""
                found = [d for p in during for d in await deliveries_of(api, p)]
                return found if len(found) == 5 and all(d["attempts"] >= 2
                                                        for d in found) else []

            waiting = await eventually(each_retried, 20, every=0.1)
            assert [d["status"] for d in waiting] == ["queued"] * 5, waiting
            retried = sum(d["attempts"] for d in waiting)
            assert retried > 5  # they were tried, failed to connect, and wait for another go

            second = EmulatorThread(port=port)
            second.state = first.state  # one record of everything FCM received
            second.start()
            await wait_sent(during, 30)

            phones = before + during
            received = {p.fcm_token: len(first.state.messages(p.fcm_token)) for p in phones}
            final = await statuses(phones)
    finally:
        first.stop()
        if second is not None:
            second.stop()
    lost = sum(1 for p in phones if received[p.fcm_token] == 0)
    duplicated = sum(1 for p in phones if received[p.fcm_token] > 1)
    report(f"\nFCM outage: {len(phones)} deliveries ({len(during)} queued while FCM was down,"
           f" {retried} failed attempts meanwhile): sent {final.count('sent')}, lost {lost},"
           f" duplicated {duplicated}")
    assert final == ["sent"] * len(phones)
    assert lost == 0 and duplicated == 0
