"""A client that hangs up mid-request is not a database outage (nothing logged as one)."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import pytest

from tests.api_client import Api
from tests.conftest import RunningServer, unique_token
from tests.eventually import eventually


async def _hang_up_mid_body(url: str, device_token: str) -> None:
    """Announce a 64 KiB body, send a few bytes of it, close the connection."""
    parts = urlsplit(url)
    _reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(
        b"POST /v1/pings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + device_token.encode() + b"\r\n"
        b"Content-Length: 65536\r\n\r\n" + b'{"pings": ['
    )
    await writer.drain()
    # The point of the test, kept as a sleep: a phone that stalls mid-body (its handler
    # left waiting for the rest), then loses its signal.
    await asyncio.sleep(0.2)
    writer.transport.abort()  # a reset, as a phone losing its signal does


async def test_client_disconnect_is_not_logged_as_database_unavailable(
    api: Api, server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    device = await api.device(unique_token())
    caplog.set_level(logging.DEBUG, logger="geopush")
    for _ in range(3):
        await _hang_up_mid_body(server.url, device.token)

    async def all_seen() -> bool:
        """each of the three hang-ups was seen by its handler (logged at DEBUG)"""
        return sum("client disconnected" in r.getMessage() for r in caplog.records) >= 3

    await eventually(all_seen)
    assert (await api.call("GET", "/healthz")).status == 200
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "database unavailable" in m], messages
    # (The alert sender's start-up note that no signing secret is set is not about this.)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING
                and not r.name.startswith("geopush.alerts")], messages
