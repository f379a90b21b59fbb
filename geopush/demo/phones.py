"""Phones replaying GeoLife trips through `POST /v1/pings`, and what their owners do next.

Time runs `speedup` times faster than in the traces: each fix is sent stamped with the
wall-clock time it is replayed at, so events are fresh and event→send latency is real.
Speeds look `speedup` times higher than walked, so the demo's server allows that much
(`[geo] max_speed_mps`). Between two trips a phone rests where the trip ended, sending a
ping now and then (people stay where they go: that is where dwell comes from), and after
the last trip of its run it starts over.

The owners act like shoppers: they open most pushes and redeem some, and on leaving a
store they sometimes buy — more often right after a cross-selling push — which the
retailer's till reports through the transactions import, so conversions and lift move.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from geopush.demo.traces import Trip
from geopush.demo.world import ApiFailed, Client, Phone, World
from geopush.geo.earth import distance_m
from geopush.timefmt import format_ts

log = logging.getLogger(__name__)

BATCH_EVERY_S = 1.0
REST_PING_EVERY_S = 8.0
# Long enough to stay past a geofence's dwell time when the trip ended in one.
REST_MIN_S = 30.0
MAX_SPEED_MPS = 70.0
ACCURACY_M = 12.0


@dataclass
class Activity:
    """What the phones and their owners did, for the summary."""

    pings_sent: int = 0
    events: Counter[str] = field(default_factory=Counter)
    opened: int = 0
    redeemed: int = 0
    purchases: int = 0
    pushes_seen: int = 0


def _iso(ts: datetime) -> str:
    return format_ts(ts)


class Replay:
    def __init__(self, client: Client, world: World, trips: list[Trip], speedup: float,
                 received: Callable[[], list[dict[str, Any]]], seed: int = 11) -> None:
        self.client, self.world, self.speedup = client, world, speedup
        self.received = received
        self.activity = Activity()
        self.rng = random.Random(seed)
        self._pending_sales: list[str] = []
        self._last_cross_push: dict[tuple[str, str], float] = {}  # (device, store) → time
        self._fence_store = {f["id"]: f["store_id"] for f in world.fences}
        self._store_ext = {s["id"]: s["external_id"] for s in world.stores}
        by_person: dict[str, list[Trip]] = {}
        for trip in trips:
            by_person.setdefault(trip.person, []).append(trip)
        self._by_person = [v for _, v in sorted(by_person.items())]

    def _sequence(self, i: int) -> list[Trip]:
        """The trips phone `i` replays: one person's, starting at a different point."""
        trips = self._by_person[i % len(self._by_person)]
        start = (i // len(self._by_person)) * 7 % max(1, len(trips))
        return trips[start:] + trips[:start]

    async def run(self) -> None:
        tasks = [asyncio.create_task(self._phone(i, p), name=f"phone-{i}")
                 for i, p in enumerate(self.world.phones)]
        tasks.append(asyncio.create_task(self._app_loop(), name="demo-app"))
        tasks.append(asyncio.create_task(self._till_loop(), name="demo-till"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _send(self, phone: Phone, pings: list[dict[str, Any]]) -> None:
        for start in range(0, len(pings), 500):
            answer = await self.client.call("POST", "/v1/pings", phone.token,
                                            {"pings": pings[start:start + 500]}, ok=(202, 429))
            if answer is None or "events" not in answer:
                continue
            self.activity.pings_sent += answer["accepted"]
            for event in answer["events"]:
                self.activity.events[event["type"]] += 1
                if event["type"] == "exit":
                    self._maybe_buy(phone, event["geofence_id"])

    async def _phone(self, i: int, phone: Phone) -> None:
        # Phones start a few seconds apart, so they do not all ping in step.
        await asyncio.sleep(i * 0.37)
        last: tuple[float, float] | None = None
        while True:
            for trip in self._sequence(i):
                first = trip.fixes[0]
                if last is not None:
                    jump = distance_m(last[1], last[0], first.lon, first.lat)
                    rest = min(90.0, max(REST_MIN_S, trip.gap_before_s / self.speedup / 10,
                                         jump / (0.5 * MAX_SPEED_MPS * self.speedup)))
                    await self._rest(phone, last, rest)
                await self._trip(phone, trip)
                last = (trip.fixes[-1].lat, trip.fixes[-1].lon)

    async def _trip(self, phone: Phone, trip: Trip) -> None:
        started = time.monotonic()
        wall0 = datetime.now(UTC)
        i = 0
        while i < len(trip.fixes):
            elapsed = (time.monotonic() - started) * self.speedup
            batch = []
            while i < len(trip.fixes) and trip.fixes[i].t <= elapsed:
                f = trip.fixes[i]
                ts = wall0 + timedelta(seconds=f.t / self.speedup)
                batch.append({"lat": f.lat, "lon": f.lon, "accuracy_m": ACCURACY_M,
                              "ts": _iso(ts)})
                i += 1
            if batch:
                await self._send(phone, batch)
            await asyncio.sleep(BATCH_EVERY_S)

    async def _rest(self, phone: Phone, where: tuple[float, float], seconds: float) -> None:
        ends = time.monotonic() + seconds
        while time.monotonic() < ends:
            await asyncio.sleep(min(REST_PING_EVERY_S, max(0.0, ends - time.monotonic())))
            await self._send(phone, [{"lat": where[0], "lon": where[1],
                                      "accuracy_m": ACCURACY_M,
                                      "ts": _iso(datetime.now(UTC))}])

    # -- the shoppers -----------------------------------------------------------------------

    def _maybe_buy(self, phone: Phone, geofence_id: str) -> None:
        store_id = self._fence_store.get(geofence_id)
        if store_id is None:
            return
        pushed = time.monotonic() - self._last_cross_push.get((phone.fcm_token, store_id),
                                                              -1e9) < 300
        if self.rng.random() < (0.45 if pushed else 0.2):
            category = "pastry" if pushed else self.rng.choice(("coffee", "coffee", "tea"))
            amount = self.rng.uniform(3, 12)
            self.activity.purchases += 1
            n = self.activity.purchases
            self._pending_sales.append(
                f"till-{self.world.run}-{n:06d},{phone.customer.customer_id},"
                f"{self._store_ext[store_id]},{_iso(datetime.now(UTC))},{amount:.2f},{category}")

    async def _till_loop(self) -> None:
        """The retailer's till sends the day's sales in batches, as a CRM feed would."""
        while True:
            await asyncio.sleep(20)
            if not self._pending_sales:
                continue
            rows, self._pending_sales = self._pending_sales, []
            body = "transaction_id,customer_id,store_external_id,ts,amount,category\n"
            await self.client.call("POST", "/v1/transactions/import",
                                   self.world.keys["marketer"], csv=body + "\n".join(rows) + "\n")

    async def _app_loop(self) -> None:
        """Pushes land on the phones: owners open most of them and redeem some."""
        by_token = {p.fcm_token: p for p in self.world.phones}
        cross_offer = self.world.offers["cross"]["id"]
        last: str | None = None  # name of the last message handled
        while True:
            await asyncio.sleep(2.0)
            messages = self.received()
            # The emulator keeps the latest messages only: find where the new ones begin.
            start = 0
            if last is not None:
                start = next((j + 1 for j in range(len(messages) - 1, -1, -1)
                              if messages[j]["name"] == last), 0)
            if messages:
                last = messages[-1]["name"]
            for m in messages[start:]:
                message = m["message"]
                phone = by_token.get(message.get("token", ""))
                if phone is None:
                    continue
                self.activity.pushes_seen += 1
                data = message.get("data", {})
                if data.get("offer_id") == cross_offer:
                    self._last_cross_push[(phone.fcm_token, data.get("store_id", ""))] = (
                        time.monotonic())
                delivery = data.get("delivery_id")
                if not delivery or self.rng.random() > 0.6:
                    continue
                try:
                    await self.client.call("POST", f"/v1/deliveries/{delivery}/opened",
                                           phone.token)
                except ApiFailed as exc:
                    # The push can reach the phone a moment before the sender has recorded
                    # it as sent (409 not_sent): this owner just does not open that one.
                    if "not_sent" not in str(exc):
                        raise
                    continue
                self.activity.opened += 1
                if self.rng.random() < 0.35:
                    await self.client.call("POST", f"/v1/deliveries/{delivery}/redeemed",
                                           phone.token)
                    self.activity.redeemed += 1
