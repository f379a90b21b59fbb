"""Setting up the demo through the HTTP API, as a retailer and its app would.

Keys for each role, stores with 120 m geofences where the traces go, the CRM (customers and
purchases, so every FRAT segment is there), four offers, and one registered phone per
customer, linked with a `customer_proof` signed the way the retailer's login backend would.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from geopush.demo.customers import Customer, crm_files, phone_customers
from geopush.demo.traces import StoreSite
from geopush.identity import issue_customer_proof

FENCE_RADIUS_M = 120
DWELL_S = 20
ALL_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ApiFailed(RuntimeError):
    """The demo's own call was refused: a bug in the demo, shown with the API's answer."""


class Client:
    """A tiny JSON client of the geopush API."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base

    async def call(self, method: str, path: str, key: str, body: Any = None, *,
                   csv: str | None = None, ok: tuple[int, ...] = (200, 201, 202, 204)) -> Any:
        headers = {"Authorization": f"Bearer {key}"}
        kwargs: dict[str, Any] = {"json": body}
        if csv is not None:
            headers["Content-Type"] = "text/csv"
            kwargs = {"data": csv.encode()}
        async with self.session.request(method, self.base + path, headers=headers,
                                        **kwargs) as r:
            data = None if r.status == 204 else await r.json(content_type=None)
            if r.status not in ok:
                raise ApiFailed(f"{method} {path}: HTTP {r.status} {data}")
            return data


@dataclass
class Phone:
    customer: Customer
    device_id: str
    token: str  # the device token for the API
    fcm_token: str
    push: bool


@dataclass
class World:
    run: str
    keys: dict[str, str]
    stores: list[dict[str, Any]]
    fences: list[dict[str, Any]]
    offers: dict[str, dict[str, Any]]
    phones: list[Phone] = field(default_factory=list)


def _message(en: tuple[str, str], fr: tuple[str, str], zh: tuple[str, str]) -> dict[str, Any]:
    return {"default_locale": "en", "translations": {
        "en": {"title": en[0], "body": en[1]}, "fr": {"title": fr[0], "body": fr[1]},
        "zh": {"title": zh[0], "body": zh[1]}}}


def _offers(store_ids: list[str]) -> dict[str, dict[str, Any]]:
    common = {"store_ids": store_ids, "ttl_s": 600}
    return {
        "best": {**common, "name": "Best customers: a coffee on us", "trigger": "enter",
                 "segments": ["best"], "priority": 10, "cooldown_s": 900,
                 "deeplink": "app://offers/coffee",
                 "message": _message(
                     ("A coffee on us, {first_name}", "Thanks for coming back to {store_name}."),
                     ("Un café offert, {first_name}", "Merci de revenir chez {store_name}."),
                     ("{first_name}，请您喝咖啡", "感谢再次光临{store_name}。"))},
        "winback": {**common, "name": "We missed you", "trigger": "enter",
                    "segments": ["at_risk", "inactive"], "priority": 8, "cooldown_s": 900,
                    "message": _message(
                        ("We missed you, {first_name}", "20 % off today at {store_name}."),
                        ("Vous nous avez manqué, {first_name}",
                         "20 % de rabais aujourd'hui chez {store_name}."),
                        ("{first_name}，好久不见", "今天在{store_name}享八折。"))},
        "dwell": {**common, "name": "Stay a while: free refill", "trigger": "dwell",
                  "priority": 5, "cooldown_s": 900,
                  "message": _message(
                      ("Free refill, {first_name}", "Staying at {store_name}? Refills are on us."),
                      ("Recharge offerte, {first_name}",
                       "Vous restez chez {store_name} ? La recharge est offerte."),
                      ("{first_name}，免费续杯", "在{store_name}多坐一会儿，续杯免费。"))},
        "cross": {**common, "name": "Before you go: a pastry", "trigger": "exit",
                  "audience": {"bought_any": ["coffee"], "not_bought": ["pastry"]},
                  "category": "pastry", "control_pct": 30, "cooldown_s": 600,
                  "message": _message(
                      ("A pastry for the road, {first_name}?",
                       "-30 % on pastries at {store_name} for the next hour."),
                      ("Une viennoiserie pour la route, {first_name} ?",
                       "-30 % sur les viennoiseries chez {store_name} pendant une heure."),
                      ("{first_name}，带个点心吧？", "一小时内在{store_name}点心七折。"))},
    }


async def build(client: Client, admin: str, sites: list[StoreSite], n_phones: int,
                link_secret: str) -> World:
    run = secrets.token_hex(3)
    keys = {"admin": admin}
    for role in ("marketer", "ops", "app"):
        made = await client.call("POST", "/v1/keys", admin, {"role": role, "name": f"demo {role}"})
        keys[role] = made["key"]
    marketer = keys["marketer"]
    stores, fences = [], []
    for site in sites:
        store = await client.call("POST", "/v1/stores", marketer, {
            "external_id": f"SB-{site.number}", "name": site.name, "timezone": "Asia/Shanghai",
            "location": {"lat": site.lat, "lon": site.lon},
            "opening_hours": {d: [["00:00", "24:00"]] for d in ALL_DAYS},
            "categories": ["coffee", "pastry", "tea", "beans"]})
        fence = await client.call("POST", "/v1/geofences", marketer, {
            "name": f"{site.name} {FENCE_RADIUS_M} m", "store_id": store["id"],
            "dwell_s": DWELL_S, "geometry": {"type": "Circle", "center": [site.lon, site.lat],
                                             "radius_m": FENCE_RADIUS_M}})
        stores.append(store)
        fences.append(fence)
    offers = {k: await client.call("POST", "/v1/offers", marketer, v)
              for k, v in _offers([s["id"] for s in stores]).items()}

    customers = phone_customers(run, n_phones)
    cust_csv, txn_csv = crm_files(run, customers, [s["external_id"] for s in stores])
    await client.call("POST", "/v1/customers/import", marketer, csv=cust_csv)
    await client.call("POST", "/v1/transactions/import", marketer, csv=txn_csv)
    await client.call("POST", "/v1/segments/recompute", marketer)

    world = World(run, keys, stores, fences, offers)
    for i, c in enumerate(customers):
        fcm_token = f"demo-{run}-{i:02d}"
        reg = await client.call("POST", "/v1/devices", keys["app"], {
            "fcm_token": fcm_token, "platform": "android" if i % 2 else "ios",
            "locale": c.locale, "timezone": "Asia/Shanghai", "customer_id": c.customer_id,
            # What the retailer's login backend hands the app once the shopper signs in.
            "customer_proof": issue_customer_proof(c.customer_id, link_secret)})
        push = i % 7 != 6  # now and then a shopper shares location but declines pushes
        await client.call("PUT", "/v1/devices/me/consent", reg["device_token"],
                          {"location": True, "push": push, "categories": None})
        world.phones.append(Phone(c, reg["device_id"], reg["device_token"], fcm_token, push))
    return world
