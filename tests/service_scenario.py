"""A store whose visits can be rated: a fence with a short dwell, and a full visit walk."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.api_client import Api, Device, walk
from tests.delivery_scenario import STORE_LAT, STORE_LON
from tests.eventually import eventually

DWELL_S = 60
FR_EN = {
    "default_locale": "en",
    "translations": {
        "en": {"title": "How was {store_name}?", "body": "Tell us, {first_name}"},
        "fr": {"title": "Comment était {store_name} ?", "body": "Dites-le-nous, {first_name}"},
    },
}


@dataclass
class RatedStore:
    store: dict[str, Any]
    fence: dict[str, Any]
    lat: float
    lon: float


async def rated_store(api: Api, *, north_km: float = 0.0, **store: Any) -> RatedStore:
    lat = STORE_LAT + north_km / 111.0
    s = await api.store(location={"lat": lat, "lon": STORE_LON}, name="Rue Cartier",
                        external_id=f"R-{uuid.uuid4().hex[:8]}", **store)
    fence = await api.circle(lat, STORE_LON, 150, store_id=s["id"], name="door",
                             dwell_s=DWELL_S)
    return RatedStore(s, fence, lat, STORE_LON)


async def visit(api: Api, shop: RatedStore, device: Device, start: datetime | None = None,
                *, stay: bool = True) -> list[dict[str, Any]]:
    """Walk in, stay past the dwell (unless `stay` is false) and walk out: the events."""
    start = start or datetime.now(UTC) - timedelta(minutes=5)
    path = walk(shop.lat, shop.lon, -400, 0, 9, start)
    after = start + timedelta(seconds=90)
    if stay:
        path += walk(shop.lat, shop.lon, 0, 1, 5, after)
        after += timedelta(seconds=50)
    path += walk(shop.lat, shop.lon, 200, 400, 4, after)
    reply = (await api.pings(device, path)).ok(202)
    return reply["events"]


async def wait_until(check: Callable[[], Awaitable[Any]], within: float = 5.0,
                     every: float = 0.05) -> Any:
    """`tests.eventually.eventually`, under the name these scenarios use."""
    return await eventually(check, within, every)
