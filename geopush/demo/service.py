"""The demo's service story (SPEC section 14): shoppers rate their visit, one had a bad
one, its store's system gets the signed alert, the recovery offer reaches the shopper in
French, staff call back, and the shopper returns.

The store's system is `AlertInbox`, a small receiver on loopback that verifies every
signature as a real store would; the summary shows what it received.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from geopush.alerts.signing import HEADER, verify
from geopush.demo.world import DWELL_S, Client, World
from geopush.identity import issue_customer_proof

SIGNING_SECRET = "demo-alerts-" + secrets.token_hex(16)
SORRY = {"default_locale": "en", "translations": {
    "en": {"title": "We are sorry, {first_name}", "body": "Your next coffee at {store_name}"
           " is on us"},
    "fr": {"title": "Toutes nos excuses, {first_name}", "body": "Votre prochain café chez"
           " {store_name} est offert"},
    "zh": {"title": "{first_name}，非常抱歉", "body": "下次在{store_name}的咖啡我们请客"}}}
ASK = {"default_locale": "en", "translations": {
    "en": {"title": "How was {store_name}?", "body": "Two taps to tell us"},
    "fr": {"title": "Comment était {store_name} ?", "body": "Dites-le-nous en deux gestes"},
    "zh": {"title": "{store_name}怎么样？", "body": "告诉我们您的体验"}}}
# (first name, locale, overall, dimensions, expectations, comment)
SHOPPERS = [
    ("Wei", "zh-CN", 5, {"empathy": 5, "reliability": 4, "tangibles": 5}, {}, None),
    ("Lucy", "en-GB", 4, {"empathy": 4, "responsiveness": 3}, {"responsiveness": 4}, None),
    ("Camille", "fr-CA", 1, {"empathy": 1, "responsiveness": 1, "reliability": 2},
     {"empathy": 5}, "Personne pour m'aider, vingt minutes à la caisse."),
]


class AlertInbox:
    """A store's system: verifies each alert's signature, keeps it once by its id."""

    def __init__(self, secret: str = SIGNING_SECRET) -> None:
        self.secret = secret
        self.alerts: dict[str, dict[str, Any]] = {}
        self.bad_signatures = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _receive(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if not verify(self.secret, request.headers.get(HEADER, ""), raw):
            self.bad_signatures += 1
            return web.Response(status=401)
        alert = json.loads(raw)
        self.alerts.setdefault(alert["id"], alert)
        return web.json_response({"received": True})

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/alerts", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/alerts"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _point(lat: float, lon: float, north_m: float) -> tuple[float, float]:
    return lat + north_m / 111_132.954, lon


def _visit(lat: float, lon: float, start: datetime, step_s: float) -> list[dict[str, Any]]:
    """Walk in from 300 m south, stay past the dwell, walk out north: one verified visit."""
    norths = [-300, -200, -100, -40, 0]
    stay = int((DWELL_S + 6) / step_s) + 1
    norths += [0] * stay + [150, 300, 450]
    out = []
    for i, north in enumerate(norths):
        plat, plon = _point(lat, lon, north + (i % 2))
        out.append({"lat": plat, "lon": plon, "accuracy_m": 8,
                    "ts": (start + timedelta(seconds=step_s * i)).isoformat()})
    return out


class ServiceStory:
    """Runs the story once; `status` is what the summary shows."""

    def __init__(self, client: Client, world: World, inbox: AlertInbox, link_secret: str,
                 received: Callable[[], list[dict[str, Any]]]) -> None:
        self.client, self.world, self.inbox = client, world, inbox
        self.link_secret = link_secret
        self.received = received
        self.status: dict[str, Any] = {"answers": 0}

    async def run(self) -> None:
        w, c = self.world, self.client
        marketer, ops = w.keys["marketer"], w.keys["ops"]
        store = w.stores[0]
        await c.call("PATCH", f"/v1/stores/{store['id']}", marketer,
                     {"alert_url": self.inbox.url})
        await c.call("POST", "/v1/offers", marketer, {
            "name": "How was your visit?", "trigger": "feedback", "message": ASK,
            "store_ids": [s["id"] for s in w.stores], "category": "feedback", "ttl_s": 3600})
        recovery = await c.call("POST", "/v1/offers", marketer, {
            "name": "Sorry coffee", "trigger": "recovery", "message": SORRY,
            "store_ids": [store["id"]], "ttl_s": 3600, "cooldown_s": 3600})
        rows = [f"{w.run}-svc-{i},{name},{locale[:2]},2024-01-01"
                for i, (name, locale, *_rest) in enumerate(SHOPPERS)]
        await c.call("POST", "/v1/customers/import", marketer,
                     csv="customer_id,first_name,language,created_at\n" + "\n".join(rows) + "\n")
        lat, lon = store["location"]["lat"], store["location"]["lon"]
        start = datetime.now(UTC) - timedelta(minutes=10)
        unhappy: dict[str, Any] = {}
        for i, (_name, locale, overall, dims, expect, comment) in enumerate(SHOPPERS):
            customer_id = f"{w.run}-svc-{i}"
            fcm_token = f"demo-{w.run}-svc-{i}"
            reg = await c.call("POST", "/v1/devices", w.keys["app"], {
                "fcm_token": fcm_token, "platform": "android", "locale": locale,
                "timezone": "Asia/Shanghai", "customer_id": customer_id,
                "customer_proof": issue_customer_proof(customer_id, self.link_secret)})
            await c.call("PUT", "/v1/devices/me/consent", reg["device_token"],
                         {"location": True, "push": True, "categories": None})
            await c.call("POST", "/v1/pings", reg["device_token"],
                         {"pings": _visit(lat, lon, start + timedelta(minutes=2 * i), 4)})
            body: dict[str, Any] = {"store_id": store["id"], "overall": overall,
                                    "dimensions": dims}
            if expect:
                body["expectations"] = expect
            if comment:
                body["comment"] = comment
            answer = await c.call("POST", "/v1/feedback", reg["device_token"], body)
            self.status["answers"] += 1
            if answer.get("case_id"):
                unhappy = {"token": reg["device_token"], "fcm": fcm_token,
                           "case": answer["case_id"]}
        if not unhappy:
            return
        self.status["case"] = "open"
        alert = await self._wait(lambda: next(
            (a for a in self.inbox.alerts.values() if a.get("case_id") == unhappy["case"]),
            None))
        if alert:
            self.status["store alert"] = (f"{alert['type']} to {store['name']}, signature"
                                          f" verified, overall {alert['overall']}/5")
        push = await self._wait(lambda: next(
            (m["message"]["notification"]["title"] for m in self.received()
             if m["message"].get("token") == unhappy["fcm"]
             and m["message"]["data"].get("offer_id") == recovery["id"]), None))
        if push:
            self.status["recovery push"] = push
        await c.call("PATCH", f"/v1/cases/{unhappy['case']}", ops,
                     {"status": "contacted", "resolution": "called back, coffee offered"})
        self.status["case"] = "contacted"
        # The shopper comes back (pings of the next half minute, sent at once).
        await c.call("POST", "/v1/pings", unhappy["token"],
                     {"pings": _visit(lat, lon, datetime.now(UTC) + timedelta(seconds=1), 2)})
        cases = await c.call("GET", f"/v1/cases?store_id={store['id']}", ops)
        mine: dict[str, Any] = next(
            (x for x in cases["items"] if x["id"] == unhappy["case"]), {})
        self.status["returned"] = "yes, case recovered" if mine.get("recovered") else "not yet"

    async def _wait(self, probe: Callable[[], Any], within_s: float = 20.0) -> Any:
        for _ in range(int(within_s / 0.25)):
            found = probe()
            if found:
                return found
            await asyncio.sleep(0.25)
        return None
