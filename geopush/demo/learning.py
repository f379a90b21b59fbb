"""The demo's learning story (SPEC section 15): one shopper tells the app what interests
her, and a gold customer who consented to recognition walks in: the store's system gets a
signed `vip_arrival` alert with her first name, so staff can greet her.

Uses the service story's `AlertInbox` (the store's system on loopback); the summary shows
what the inbox received.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from geopush.demo.service import AlertInbox, _visit
from geopush.demo.world import Client, World
from geopush.identity import issue_customer_proof

# (first name, locale, preferences, recognition consent, points given by the desk)
SHOPPERS = [
    ("Ana", "en-GB", {"interests": ["bakery"], "max_per_week": 3}, False, 0),
    ("Mei", "zh-CN", None, True, 2500),
]


class LearningStory:
    def __init__(self, client: Client, world: World, inbox: AlertInbox,
                 link_secret: str) -> None:
        self.client, self.world, self.inbox = client, world, inbox
        self.link_secret = link_secret
        self.status: dict[str, Any] = {}

    async def run(self) -> None:
        w, c = self.world, self.client
        marketer = w.keys["marketer"]
        store = w.stores[-1]
        await c.call("PATCH", f"/v1/stores/{store['id']}", marketer,
                     {"alert_url": self.inbox.url})
        rows = [f"{w.run}-learn-{i},{name},{locale[:2]},2020-01-01"
                for i, (name, locale, *_rest) in enumerate(SHOPPERS)]
        await c.call("POST", "/v1/customers/import", marketer,
                     csv="customer_id,first_name,language,created_at\n" + "\n".join(rows) + "\n")
        lat, lon = store["location"]["lat"], store["location"]["lon"]
        start = datetime.now(UTC) - timedelta(minutes=5)
        for i, (name, locale, prefs, recognition, points) in enumerate(SHOPPERS):
            customer_id = f"{w.run}-learn-{i}"
            if points:
                await c.call("POST", f"/v1/customers/{customer_id}/points", marketer,
                             {"points": points, "reason": "adjustment",
                              "note": "welcome back"})
            reg = await c.call("POST", "/v1/devices", w.keys["app"], {
                "fcm_token": f"demo-{w.run}-learn-{i}", "platform": "android",
                "locale": locale, "timezone": "Asia/Shanghai", "customer_id": customer_id,
                "customer_proof": issue_customer_proof(customer_id, self.link_secret)})
            await c.call("PUT", "/v1/devices/me/consent", reg["device_token"],
                         {"location": True, "push": True, "recognition": recognition})
            if prefs:
                got = await c.call("PUT", "/v1/devices/me/preferences", reg["device_token"],
                                   prefs)
                self.status["preferences"] = (
                    f"{name} wants {', '.join(got.get('interests') or [])},"
                    f" at most {got.get('max_per_week')} a week")
            await c.call("POST", "/v1/pings", reg["device_token"],
                         {"pings": _visit(lat, lon, start + timedelta(minutes=2 * i), 4)})
        alert = await self._wait(lambda: next(
            (a for a in self.inbox.alerts.values() if a.get("type") == "vip_arrival"), None))
        self.status["vip arrival"] = (
            f"{alert['first_name']} ({alert['level']}, {alert['segment']}) entered"
            f" {store['name']}: staff alerted, signature verified" if alert else "not yet")

    async def _wait(self, probe: Callable[[], Any], within_s: float = 20.0) -> Any:
        for _ in range(int(within_s / 0.25)):
            found = probe()
            if found:
                return found
            await asyncio.sleep(0.25)
        return None
