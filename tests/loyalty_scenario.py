"""Shops with a one-minute dwell and phones that check in: what the loyalty tests share."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.api_client import Api, Device, daytime_zone, offset_m

BASE_LAT, BASE_LON = 39.9087, 116.3975
DWELL_S = 60


@dataclass
class Shop:
    store: dict[str, Any]
    fence: dict[str, Any]
    lat: float
    lon: float


async def open_shop(api: Api, index: int = 0, timezone: str | None = None) -> Shop:
    """A store with a 100 m circle (dwell after 60 s); shops are 2 km apart, due north."""
    lat, lon = offset_m(BASE_LAT, BASE_LON, 2000.0 * index, 0.0)
    # Days are the store's (SPEC 11): a zone where it is about noon, as for the phones, so
    # visits from a few hours ago fall on one store day whenever the suite runs.
    store = await api.store(location={"lat": lat, "lon": lon}, timezone=timezone or daytime_zone(),
                            external_id=f"L-{uuid.uuid4().hex[:8]}", name=f"Shop {index}")
    fence = await api.circle(lat, lon, 100, store_id=store["id"], name=f"door {index}",
                             dwell_s=DWELL_S)
    return Shop(store, fence, lat, lon)


def visit_pings(shop: Shop, at: datetime, *, away_after: bool = True
                ) -> list[tuple[float, float, datetime]]:
    """At the door at `at`, still there 70 s later (dwell), then 1.2 km east: visit over."""
    path = [(shop.lat, shop.lon, at), (shop.lat, shop.lon, at + timedelta(seconds=70))]
    if away_after:
        lat, lon = offset_m(shop.lat, shop.lon, 0.0, 1200.0)
        path.append((lat, lon, at + timedelta(seconds=160)))
    return path


async def check_in(api: Api, device: Device, shop: Shop, at: datetime, **kw: Any
                   ) -> dict[str, Any]:
    """One visit long enough to dwell; returns the ping batch's answer."""
    reply = (await api.pings(device, visit_pings(shop, at), **kw)).ok(202)
    types = [e["type"] for e in reply["events"]]
    assert "dwell" in types, reply
    return reply


async def loyalty(api: Api, device: Device) -> dict[str, Any]:
    return (await api.call("GET", "/v1/devices/me/loyalty", key=device.token)).ok(200)


async def import_customers(api: Api, rows: list[tuple[str, str]], last_names: bool = False
                           ) -> None:
    header = "customer_id,first_name,language,created_at" + (",last_name" if last_names else "")
    lines = [header]
    for row in rows:
        lines.append(",".join([row[0], row[1], "en", "2024-01-01", *row[2:]]))
    reply = await api.as_role("marketer", "POST", "/v1/customers/import",
                              data="\n".join(lines).encode(),
                              headers={"Content-Type": "text/csv"})
    reply.ok(200)


def hours_ago(hours: float) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)
