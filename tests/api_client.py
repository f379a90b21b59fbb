"""A small client for the geopush HTTP API, as an app or a marketer tool would call it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from geopush.identity import issue_customer_proof

# The `[auth] customer_link_secret` of test servers: `Api.device(customer_id=...)` signs a
# customer_proof with it, as the retailer's login backend would.
CUSTOMER_LINK_SECRET = "test-customer-link-secret-" + "s" * 16

EN_FR = {
    "default_locale": "en",
    "translations": {
        "en": {"title": "Coffee time", "body": "Welcome to {store_name}, {first_name}!"},
        "fr": {"title": "L'heure du café", "body": "Bienvenue chez {store_name}, {first_name} !"},
    },
}


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any

    def ok(self, *expected: int) -> Any:
        assert self.status in expected, f"HTTP {self.status}: {self.body}"
        return self.body


@dataclass
class Device:
    device_id: str
    token: str
    fcm_token: str


def daytime_zone() -> str:
    """An IANA zone where it is about noon now, so quiet hours never get in a test's way."""
    offset = 12 - datetime.now(UTC).hour
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def offset_m(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    """A point `north_m`, `east_m` metres from (lat, lon) (small offsets)."""
    dlat = north_m / 111_132.954
    dlon = east_m / (111_319.49 * math.cos(math.radians(lat)))
    return lat + dlat, lon + dlon


class Api:
    def __init__(self, base_url: str, admin_key: str) -> None:
        self.base_url = base_url
        self.admin_key = admin_key
        self.session: aiohttp.ClientSession | None = None
        self._keys: dict[str, str] = {"admin": admin_key}

    async def __aenter__(self) -> Api:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self.session is not None
        await self.session.close()

    async def call(self, method: str, path: str, *, key: str | None = None, json: Any = None,
                   data: Any = None, headers: dict[str, str] | None = None) -> Reply:
        assert self.session is not None
        h = dict(headers or {})
        if key is not None:
            h["Authorization"] = f"Bearer {key}"
        async with self.session.request(method, self.base_url + path, json=json, data=data,
                                        headers=h) as resp:
            text = await resp.text()
            try:
                import json as _json

                body = _json.loads(text) if text else None
            except ValueError:
                body = text
            return Reply(resp.status, body, resp.headers)

    async def key(self, role: str) -> str:
        if role not in self._keys:
            reply = await self.call("POST", "/v1/keys", key=self.admin_key,
                                    json={"role": role, "name": f"test {role}"})
            self._keys[role] = reply.ok(201)["key"]
        return self._keys[role]

    async def as_role(self, role: str, method: str, path: str, **kw: Any) -> Reply:
        return await self.call(method, path, key=await self.key(role), **kw)

    async def store(self, **fields: Any) -> dict[str, Any]:
        body = {"external_id": f"S{id(fields)}-{datetime.now().timestamp()}", "name": "Store",
                "timezone": "Asia/Shanghai", "location": {"lat": 39.9, "lon": 116.4}}
        body.update(fields)
        return (await self.as_role("marketer", "POST", "/v1/stores", json=body)).ok(201)

    async def circle(self, lat: float, lon: float, radius_m: float, **fields: Any
                     ) -> dict[str, Any]:
        body = {"name": "circle", "geometry": {"type": "Circle", "center": [lon, lat],
                                               "radius_m": radius_m}}
        body.update(fields)
        return (await self.as_role("marketer", "POST", "/v1/geofences", json=body)).ok(201)

    async def offer(self, **fields: Any) -> dict[str, Any]:
        body = {"trigger": "enter", "message": EN_FR}
        body.update(fields)
        return (await self.as_role("marketer", "POST", "/v1/offers", json=body)).ok(201)

    async def device(self, fcm_token: str, *, locale: str = "en", timezone: str | None = None,
                     customer_id: str | None = None, location: bool = True, push: bool = True,
                     categories: list[str] | None = None, platform: str = "android") -> Device:
        body: dict[str, Any] = {"fcm_token": fcm_token, "platform": platform, "locale": locale,
                                "timezone": timezone or daytime_zone()}
        if customer_id is not None:
            body["customer_id"] = customer_id
            body["customer_proof"] = issue_customer_proof(customer_id, CUSTOMER_LINK_SECRET)
        reg = (await self.as_role("app", "POST", "/v1/devices", json=body)).ok(201)
        device = Device(reg["device_id"], reg["device_token"], fcm_token)
        if location or push:
            (await self.call("PUT", "/v1/devices/me/consent", key=device.token,
                             json={"location": location, "push": push,
                                   "categories": categories})).ok(200)
        return device

    async def pings(self, device: Device, points: list[tuple[float, float, datetime]],
                    accuracy_m: float = 10.0, batch_id: str | None = None) -> Reply:
        body: dict[str, Any] = {"pings": [
            {"lat": lat, "lon": lon, "accuracy_m": accuracy_m, "ts": iso(ts)}
            for lat, lon, ts in points
        ]}
        if batch_id is not None:
            body["batch_id"] = batch_id
        return await self.call("POST", "/v1/pings", key=device.token, json=body)


def walk(lat: float, lon: float, start_north_m: float, end_north_m: float, steps: int,
         start: datetime, every_s: float = 10.0) -> list[tuple[float, float, datetime]]:
    """Pings walking due north from `start_north_m` to `end_north_m` of (lat, lon)."""
    out = []
    for i in range(steps):
        north = start_north_m + (end_north_m - start_north_m) * i / max(steps - 1, 1)
        plat, plon = offset_m(lat, lon, north, 0.0)
        out.append((plat, plon, start + timedelta(seconds=every_s * i)))
    return out


async def emulator_messages(emulator_url: str, token: str | None = None) -> list[dict[str, Any]]:
    params = {"token": token} if token else {}
    async with aiohttp.ClientSession() as s, s.get(f"{emulator_url}/messages",
                                                   params=params) as resp:
        body = await resp.json()
    return body["messages"]


def metric_value(metrics_text: str, name: str, **labels: str) -> float:
    """One sample of a `/metrics` text, by its full name and labels."""
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"no {name}{labels} in /metrics")
