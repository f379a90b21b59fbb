"""`geopush demo`: the whole product on one machine, on real Beijing store data.

It starts the embedded PostgreSQL (data under `.geopush/`), the FCM emulator and geopush
itself, creates stores and 150 m geofences through the HTTP API as a marketer would, an
enter offer in English and French, and phones that walk past the stores; then it prints
what happened (events, pushes received by the emulator) and a live summary until the end.
"""

from __future__ import annotations

import asyncio
import csv
import math
import os
import secrets
import socket
import time
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from geopush.app import create_app
from geopush.config import load_config
from geopush.emulator.credentials import write_service_account
from geopush.emulator.thread import EmulatorThread
from geopush.identity import issue_customer_proof
from geopush.store.database import embedded_server, ensure_database

N_STORES = 12
MESSAGE = {
    "default_locale": "en",
    "translations": {
        "en": {"title": "A coffee on us, {first_name}",
               "body": "You are at {store_name}: show this for 20% off."},
        "fr": {"title": "Un café pour vous, {first_name}",
               "body": "Vous êtes chez {store_name} : 20 % de rabais sur présentation."},
    },
}


def _store_rows() -> tuple[list[dict[str, str]], str]:
    """Beijing stores from ../shared/data if it is there, else the bundled sample."""
    candidates = [os.environ.get("GEOPUSH_DEMO_DATA", ""), "../shared/data", "shared/data"]
    for folder in candidates:
        path = Path(folder) / "starbucks_directory.csv" if folder else None
        if path is not None and path.is_file():
            with path.open(encoding="utf-8") as f:
                rows = [r for r in csv.DictReader(f) if r["Country"] == "CN"
                        and r["City"].strip() in ("Beijing", "北京市", "北京")]
            return rows, str(path)
    sample = resources.files("geopush").joinpath("demo_data/stores_beijing.csv")
    with sample.open(encoding="utf-8") as f:
        return list(csv.DictReader(f)), "bundled sample"


def _free_port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


def _offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    return (lat + north_m / 111_132.954,
            lon + east_m / (111_319.49 * math.cos(math.radians(lat))))


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


class _Client:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base

    async def call(self, method: str, path: str, key: str, body: Any = None) -> Any:
        async with self.session.request(method, self.base + path, json=body,
                                        headers={"Authorization": f"Bearer {key}"}) as r:
            data = await r.json(content_type=None)
            if r.status >= 400:
                raise RuntimeError(f"{method} {path}: HTTP {r.status} {data}")
            return data


async def _scenario(client: _Client, admin: str, emulator_url: str, link_secret: str
                    ) -> dict[str, Any]:
    rows, source = _store_rows()
    print(f"stores: {len(rows)} Beijing stores from {source}; using {N_STORES}")
    marketer = (await client.call("POST", "/v1/keys", admin, {"role": "marketer",
                                                               "name": "demo marketer"}))["key"]
    app_key = (await client.call("POST", "/v1/keys", admin, {"role": "app",
                                                              "name": "demo app"}))["key"]
    ops = (await client.call("POST", "/v1/keys", admin, {"role": "ops",
                                                          "name": "demo ops"}))["key"]
    run = secrets.token_hex(3)
    stores = []
    for row in rows[:N_STORES]:
        lat, lon = float(row["Latitude"]), float(row["Longitude"])
        store = await client.call("POST", "/v1/stores", marketer, {
            "external_id": f"{row['Store Number']}-{run}", "name": row["store_name"],
            "timezone": "Asia/Shanghai", "location": {"lat": lat, "lon": lon},
            "opening_hours": {d: [["00:00", "24:00"]] for d in
                              ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
        })
        fence = await client.call("POST", "/v1/geofences", marketer, {
            "name": f"{row['store_name']} 150 m", "store_id": store["id"], "dwell_s": 60,
            "geometry": {"type": "Circle", "center": [lon, lat], "radius_m": 150},
        })
        stores.append((store, fence, lat, lon))
    await client.call("POST", "/v1/offers", marketer, {
        "name": "Welcome coffee", "trigger": "enter", "store_ids": [s["id"] for s, *_ in stores],
        "message": MESSAGE, "cooldown_s": 3600, "ttl_s": 900, "deeplink": "app://offers/coffee",
    })
    print(f"created {len(stores)} stores, {len(stores)} geofences (150 m circles), 1 offer")

    names = ["Camille", "Olivia", "Louis", "Harry", "Wei"]
    customers = "customer_id,first_name,language,created_at\n" + "".join(
        f"demo-{run}-{i},{name},{'fr' if i in (0, 2) else 'en'},2025-06-01\n"
        for i, name in enumerate(names))
    async with client.session.post(f"{client.base}/v1/customers/import", data=customers,
                                   headers={"Authorization": f"Bearer {marketer}",
                                            "Content-Type": "text/csv"}) as r:
        imported = await r.json()
    print(f"CRM: imported {imported.get('upserted', 0)} customers (first names for the texts)")

    phones = []
    for i, locale in enumerate(["fr-CA", "en-US", "fr-FR", "en-GB", "zh-CN"]):
        reg = await client.call("POST", "/v1/devices", app_key, {
            "fcm_token": f"demo-{run}-{i}", "platform": "android" if i % 2 else "ios",
            "locale": locale, "timezone": "Asia/Shanghai", "customer_id": f"demo-{run}-{i}",
            # What the retailer's login backend hands the app once the shopper signs in.
            "customer_proof": issue_customer_proof(f"demo-{run}-{i}", link_secret),
        })
        push = i != 4  # the last phone shares location but declines pushes
        await client.call("PUT", "/v1/devices/me/consent", reg["device_token"],
                          {"location": True, "push": push, "categories": None})
        phones.append((reg, locale, push))

    now = datetime.now(UTC)
    events = 0
    for i, (reg, locale, push) in enumerate(phones):
        store, fence, lat, lon = stores[i % len(stores)]
        start = now - timedelta(minutes=10)
        walk = []
        for step in range(40):  # from 600 m south, through the store, to 570 m north
            plat, plon = _offset(lat, lon, -600 + step * 30, 0)
            walk.append({"lat": plat, "lon": plon, "accuracy_m": 12,
                         "ts": _iso(start + timedelta(seconds=15 * step))})
        kinds = []
        # Two uploads, as a phone batches them: up to the door, then through and out. The
        # push for the enter goes out between them; had the phone already left, it would
        # be cancelled (left_geofence) rather than sent late.
        for part, pings in enumerate((walk[:21], walk[21:])):
            answer = await client.call("POST", "/v1/pings", reg["device_token"],
                                       {"pings": pings, "batch_id": f"walk-{run}-{i}-{part}"})
            kinds += [e["type"] for e in answer["events"]]
            events += len(answer["events"])
            await asyncio.sleep(1.0)
        print(f"phone {i + 1} ({locale}, push {'on' if push else 'off'}) walked past"
              f" {store['name']}: events {', '.join(kinds) or 'none'}")

    deadline = time.monotonic() + 10
    messages: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        async with client.session.get(f"{emulator_url}/messages") as r:
            messages = [m for m in (await r.json())["messages"]
                        if m["message"].get("token", "").startswith(f"demo-{run}-")]
        if len(messages) >= 4:
            break
        await asyncio.sleep(0.2)
    print(f"\nthe FCM emulator received {len(messages)} push(es):")
    for m in messages:
        n = m["message"].get("notification", {})
        print(f"  to {m['message']['token']}: {n.get('title')!r} / {n.get('body')!r}")
    return {"ops_key": ops, "events": events, "pushes": len(messages)}


async def _main(port: int, duration: float, data_dir: str) -> int:
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    print(f"starting embedded PostgreSQL under {Path(data_dir).resolve()} ...")
    with EmulatorThread() as emu:
        sa = write_service_account(Path(data_dir) / "demo-service-account.json",
                                   emu.token_uri, "geopush-demo")
        admin = "demo-admin-" + secrets.token_hex(16)
        link_secret = secrets.token_urlsafe(32)  # shared with the "retailer's backend" below
        port = _free_port(port)
        config = load_config(path=None, environ={}, overrides={
            "server": {"port": port}, "data": {"dir": data_dir},
            "auth": {"bootstrap_admin_key": admin, "customer_link_secret": link_secret},
            "fcm": {"credentials_file": str(sa), "endpoint": emu.base_url,
                    "poll_interval_s": 0.1},
            "geo": {"sweep_interval_s": 1},
            # The phones live in Beijing time; with quiet hours on, a demo run in the
            # Beijing night would show only `quiet_hours` suppressions.
            "campaigns": {"quiet_hours_start": "00:00", "quiet_hours_end": "00:00"},
        })
        url = await asyncio.get_running_loop().run_in_executor(None, _fresh_database, data_dir)
        runner = web.AppRunner(create_app(config, database_url=url), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        base = f"http://127.0.0.1:{port}"
        print(f"geopush is serving on {base}; FCM emulator on {emu.base_url}\n")
        try:
            async with aiohttp.ClientSession() as session:
                client = _Client(session, base)
                result = await _scenario(client, admin, emu.base_url, link_secret)
                print(f"\ndashboard: {base}/dashboard  (ops key: {result['ops_key']})")
                print(f"metrics:   {base}/metrics\n")
                ends = time.monotonic() + duration if duration > 0 else math.inf
                while time.monotonic() < ends:
                    async with session.get(f"{base}/metrics") as r:
                        text = await r.text()
                    sent = _metric_sum(text, "geopush_deliveries_total", 'status="sent"')
                    pings = _metric_sum(text, "geopush_pings_total", "")
                    print(f"[{datetime.now().strftime('%H:%M:%S')}] pings {pings:.0f},"
                          f" events {_metric_sum(text, 'geopush_events_total', ''):.0f},"
                          f" pushes sent {sent:.0f}", flush=True)
                    await asyncio.sleep(min(5.0, max(0.0, ends - time.monotonic())) or 0.01)
                    if time.monotonic() >= ends:
                        break
            ok = result["events"] > 0 and result["pushes"] > 0
            return 0 if ok else 1
        finally:
            await runner.cleanup()


def _fresh_database(data_dir: str) -> str:
    """A new `geopush_demo` database on the embedded server, so every run starts clean."""
    server = embedded_server(data_dir)
    server.psql('DROP DATABASE IF EXISTS "geopush_demo" WITH (FORCE);')
    return ensure_database(server, "geopush_demo")


def _metric_sum(text: str, name: str, must_contain: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and must_contain in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def run_demo(port: int = 8080, duration: float = 90.0, data_dir: str = ".geopush") -> int:
    try:
        return asyncio.run(_main(port, duration, data_dir))
    except KeyboardInterrupt:
        return 0
