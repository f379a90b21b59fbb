"""The demo's learning story (SPEC section 15): one shopper tells the app what interests
her, a gold customer who consented to recognition walks in (the store's system gets a
signed `vip_arrival` alert with her first name, so staff can greet her), and a tea drinker
who never opens the store's matcha offer stops getting it: after `[campaigns]
fatigue_after` unopened pushes, his next visit is held back with reason `fatigue`.

Uses the service story's `AlertInbox` (the store's system on loopback); the summary shows
what the inbox received.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from geopush.demo.service import AlertInbox, _point, _visit
from geopush.demo.world import Client, World
from geopush.identity import issue_customer_proof

# (first name, locale, preferences, recognition consent, points given by the desk)
SHOPPERS = [
    ("Ana", "en-GB", {"interests": ["bakery"], "max_per_week": 3}, False, 0),
    ("Mei", "zh-CN", None, True, 2500),
]
# The shopper who tires of an offer; the offer is his alone (its audience bought matcha,
# and only he did), so the story does not depend on the other phones' paths.
FATIGUED = "Leo"
MATCHA = {"default_locale": "en", "translations": {
    "en": {"title": "Matcha is back, {first_name}", "body": "Fresh tins at {store_name}"},
    "fr": {"title": "Le matcha est de retour, {first_name}",
           "body": "Nouvelles boîtes chez {store_name}"},
    "zh": {"title": "{first_name}，抹茶到货了", "body": "{store_name}新到抹茶"}}}


class LearningStory:
    def __init__(self, client: Client, world: World, inbox: AlertInbox,
                 link_secret: str, fatigue_after: int = 5, max_speed_mps: float = 70.0,
                 min_ping_interval_s: float = 1.0) -> None:
        self.client, self.world, self.inbox = client, world, inbox
        self.link_secret = link_secret
        self.fatigue_after = fatigue_after
        self.max_speed_mps, self.min_ping_interval_s = max_speed_mps, min_ping_interval_s
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
        await self._fatigue(store)

    async def _fatigue(self, store: dict[str, Any]) -> None:
        """Leo passes the store again and again and never opens the matcha push: once
        `fatigue_after` have gone unopened, the next pass is held back (`fatigue`)."""
        w, c = self.world, self.client
        marketer = w.keys["marketer"]
        customer_id = f"{w.run}-learn-fatigue"
        month_ago = (datetime.now(UTC) - timedelta(days=30)).isoformat()
        await c.call("POST", "/v1/customers/import", marketer,
                     csv="customer_id,first_name,language,created_at\n"
                         f"{customer_id},{FATIGUED},en,2020-01-01\n")
        await c.call("POST", "/v1/transactions/import", marketer,
                     csv="transaction_id,customer_id,store_external_id,ts,amount,category\n"
                         f"{w.run}-matcha-1,{customer_id},{store['external_id']},"
                         f"{month_ago},12.50,matcha\n")
        offer = await c.call("POST", "/v1/offers", marketer, {
            "name": "Matcha is back", "trigger": "enter", "message": MATCHA,
            "store_ids": [store["id"]], "category": "matcha", "priority": 20,
            "audience": {"bought_any": ["matcha"]}, "cooldown_s": 0, "ttl_s": 3600})
        reg = await c.call("POST", "/v1/devices", w.keys["app"], {
            "fcm_token": f"demo-{w.run}-learn-fatigue", "platform": "ios",
            "locale": "en-GB", "timezone": "Asia/Shanghai", "customer_id": customer_id,
            "customer_proof": issue_customer_proof(customer_id, self.link_secret)})
        await c.call("PUT", "/v1/devices/me/consent", reg["device_token"],
                     {"location": True, "push": True})
        lat, lon = store["location"]["lat"], store["location"]["lon"]
        # He walks in real time (the demo's pace), so his pushes' event-to-send latency is
        # what any phone's is: a fix every `step` seconds, each stride within the speed rule.
        step = max(1.5 * self.min_ping_interval_s, 2 * _STRIDE_M / self.max_speed_mps)
        for i in range(self.fatigue_after + 1):
            await c.call("POST", "/v1/pings", reg["device_token"],
                         {"pings": await _walk(lat, lon, _WALK_IN, step)})
            if i < self.fatigue_after:  # each push is sent (and left unopened) before he
                sent = await self._wait(  # walks out, which would cancel it
                    functools.partial(self._stats_reach, offer["id"], i + 1))
                if not sent:
                    self.status["fatigue"] = "not yet"
                    return
            await c.call("POST", "/v1/pings", reg["device_token"],
                         {"pings": await _walk(lat, lon, _WALK_OUT, step)})
        held = await self._wait(lambda: self._held(offer["id"]))
        self.status["fatigue"] = (
            f"{FATIGUED} left {self.fatigue_after} matcha pushes unopened; his next visit"
            f" was held back ({held})" if held else "not yet")

    async def _stats_reach(self, offer_id: str, sent: int) -> bool:
        stats = await self.client.call("GET", f"/v1/offers/{offer_id}/stats",
                                       self.world.keys["marketer"])
        return bool(stats["sent"] >= sent)

    async def _held(self, offer_id: str) -> str | None:
        stats = await self.client.call("GET", f"/v1/offers/{offer_id}/stats",
                                       self.world.keys["marketer"])
        return "fatigue" if stats["suppressed"].get("fatigue") else None

    async def _wait(self, probe: Callable[[], Any], within_s: float = 20.0) -> Any:
        for _ in range(int(within_s / 0.25)):
            found = probe()
            if inspect.isawaitable(found):
                found = await found
            if found:
                return found
            await asyncio.sleep(0.25)
        return None


# Metres north of the store, 120 m fence: in from the south (an enter), then out to the
# north past the exit buffer (an exit), too quick for a dwell (so no feedback request).
_WALK_IN = (-200, -140, -60)
_WALK_OUT = (60, 150, 220)
_STRIDE_M = 120  # the longest step between two fixes of the walk


async def _walk(lat: float, lon: float, norths: tuple[int, ...], step: float
                ) -> list[dict[str, Any]]:
    """Fixes `step` seconds apart ending now, after walking that long."""
    await asyncio.sleep(step * len(norths))
    now = datetime.now(UTC)
    return [{"lat": _point(lat, lon, n)[0], "lon": lon, "accuracy_m": 8,
             "ts": (now - timedelta(seconds=step * (len(norths) - 1 - k))).isoformat()}
            for k, n in enumerate(norths)]
