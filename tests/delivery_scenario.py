"""A shop, an offer and phones walking in: the scenario the delivery tests share.

Servers for these tests run with quiet hours off (the daytime zone of `Api.device` aside,
no outcome may depend on the hour the suite runs) and backoff in tens of milliseconds.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from geopush.emulator import EmulatorThread
from tests.api_client import Api, Device, walk
from tests.eventually import eventually

STORE_LAT, STORE_LON = 39.9087, 116.3975
# Quiet hours off (start == end) on top of Api.device's daytime zone, so no outcome here
# depends on the hour the suite runs; backoff in tens of milliseconds, so retries are quick.
FAST: dict[str, dict[str, Any]] = {
    "campaigns": {"quiet_hours_start": "00:00", "quiet_hours_end": "00:00"},
    "fcm": {"retry_base_s": 0.05, "retry_cap_s": 0.2},
}
FINISHED = ("sent", "failed", "cancelled")
@dataclass
class Shop:
    store: dict[str, Any]
    fence: dict[str, Any]
    offer: dict[str, Any]
    lat: float
    lon: float


def sections(**extra: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """FAST merged with a test's own config sections."""
    merged = {name: dict(values) for name, values in FAST.items()}
    for name, values in extra.items():
        merged.setdefault(name, {}).update(values)
    return merged


async def open_shop(api: Api, *, north_km: float = 0.0, **offer: Any) -> Shop:
    """A store with a 150 m circle and an enter offer on it; `north_km` apart per shop."""
    lat = STORE_LAT + north_km / 111.0
    store = await api.store(location={"lat": lat, "lon": STORE_LON},
                            external_id=f"S-{uuid.uuid4().hex[:8]}")
    fence = await api.circle(lat, STORE_LON, 150, store_id=store["id"], name="door")
    fields: dict[str, Any] = {"geofence_ids": [fence["id"]], "trigger": "enter", "ttl_s": 900,
                              "name": "Coffee"}
    fields.update(offer)
    return Shop(store, fence, await api.offer(**fields), lat, STORE_LON)


async def walk_in(api: Api, shop: Shop, device: Device, start: datetime | None = None,
                  *, then_out: bool = False) -> dict[str, Any]:
    """Nine pings from 400 m south to the centre (one enter), and on out to 400 m north."""
    start = start or datetime.now(UTC) - timedelta(minutes=5)
    path = walk(shop.lat, shop.lon, -400, 0, 9, start)
    if then_out:
        path += walk(shop.lat, shop.lon, 50, 400, 8, start + timedelta(seconds=90))
    reply = (await api.pings(device, path)).ok(202)
    assert [e["type"] for e in reply["events"]][:1] == ["enter"], reply
    return reply


async def deliveries_of(api: Api, device: Device) -> list[dict[str, Any]]:
    reply = await api.as_role("ops", "GET", f"/v1/deliveries?device_id={device.device_id}")
    return reply.ok(200)["items"]


async def finished_delivery(api: Api, device: Device, within: float = 5.0,
                            statuses: Sequence[str] = FINISHED) -> dict[str, Any]:
    """The device's one delivery, once its status is one of `statuses`."""

    async def check() -> dict[str, Any] | None:
        items = await deliveries_of(api, device)
        assert len(items) <= 1, items
        return items[0] if items and items[0]["status"] in statuses else None

    return await eventually(check, within)


async def get_delivery(api: Api, delivery_id: str) -> dict[str, Any]:
    return (await api.as_role("ops", "GET", f"/v1/deliveries/{delivery_id}")).ok(200)


def attempts(emulator: EmulatorThread, token: str) -> list[Any]:
    """Every messages:send request the emulator saw for `token`, oldest first."""
    return emulator.state.attempts(token)


async def device_state(api: Api, device: Device) -> dict[str, Any]:
    return (await api.call("GET", "/v1/devices/me", key=device.token)).ok(200)


async def sender_idle(db: asyncpg.Connection, within: float = 10.0) -> None:
    """Wait until no delivery is queued: every push decided so far is at the emulator (or
    failed, or cancelled), so a test may count what a phone got and know it is final."""

    async def idle() -> bool:
        return not await db.fetchval(
            "SELECT count(*) FROM deliveries WHERE status = 'queued'")

    await eventually(idle, within, what="every delivery sent, failed or cancelled")
