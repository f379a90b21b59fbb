"""Several `geopush serve` processes on one PostgreSQL: shared index, serialized devices."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from tests.api_client import Api, metric_value, offset_m, walk
from tests.conftest import ADMIN_KEY, unique_token
from tests.eventually import eventually

LAT, LON = 39.95, 116.35


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_ready(url: str, proc: subprocess.Popen, within_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    async with aiohttp.ClientSession() as s:
        while asyncio.get_running_loop().time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"geopush serve exited: {proc.stderr.read()}")  # type: ignore[union-attr]
            try:
                async with s.get(f"{url}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("geopush serve did not become ready")


async def wait_for_geofences(url: str, loaded: int, within_s: float) -> None:
    """Poll a process's metrics until its index holds `loaded` geofences."""
    async with aiohttp.ClientSession() as s:

        async def at_count() -> bool:
            async with s.get(f"{url}/metrics") as r:
                return metric_value(await r.text(), "geopush_geofences_loaded") == loaded

        await eventually(at_count, within_s, what=f"index at {loaded} geofences")


@pytest.fixture
async def serve_process(database_url: str, tmp_path: Path
                        ) -> AsyncIterator[Callable[[], asyncio.Future]]:
    """Start real `geopush serve` processes (from a directory with no config) on loopback."""
    procs: list[subprocess.Popen] = []

    async def start(*args: str, **settings: str) -> str:
        port = _free_port()
        env = {
            **os.environ,
            "GEOPUSH_DATABASE_URL": database_url,
            "GEOPUSH_SERVER_PORT": str(port),
            "GEOPUSH_SERVER_RUN_SENDER": "false",
            "GEOPUSH_AUTH_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
            "GEOPUSH_LIMITS_DEVICE_RATE_PER_S": "1000",
            "GEOPUSH_LIMITS_ADDRESS_PING_RATE_PER_S": "100000",
            **settings,
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "geopush", "serve", *args], cwd=tmp_path, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        await _wait_ready(url, proc)
        return url

    yield start  # type: ignore[misc]
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


async def test_geofence_change_reaches_other_process_within_2s(serve_process) -> None:
    url_a, url_b = await asyncio.gather(serve_process(), serve_process())
    async with Api(url_a, ADMIN_KEY) as a, Api(url_b, ADMIN_KEY) as b:
        fence = await a.circle(LAT, LON, 100)
        await wait_for_geofences(url_b, 1, within_s=2.0)
        # And B really uses it: a device pinging B enters the fence A created.
        b._keys = dict(a._keys)
        dev = await b.device(unique_token())
        reply = (await b.pings(dev, [(LAT, LON, datetime.now(UTC) - timedelta(seconds=5))]))
        assert reply.ok(202)["events"] == [
            {"type": "enter", "geofence_id": fence["id"], "ts": reply.body["events"][0]["ts"]}
        ]
        # Disabling it on B closes the visit silently and A forgets it too.
        (await b.as_role("marketer", "PATCH", f"/v1/geofences/{fence['id']}",
                         json={"enabled": False})).ok(200)
        await wait_for_geofences(url_a, 0, within_s=2.0)

async def test_one_device_alternating_between_processes_never_double_enters(
    serve_process,
) -> None:
    url_a, url_b = await asyncio.gather(serve_process(), serve_process())
    async with Api(url_a, ADMIN_KEY) as a, Api(url_b, ADMIN_KEY) as b:
        await a.circle(LAT, LON, 120)
        b._keys = dict(a._keys)
        await wait_for_geofences(url_b, 1, within_s=10.0)
        dev = await a.device(unique_token())
        start = datetime.now(UTC) - timedelta(hours=2)
        # 20 trips in and out, each batch sent to both processes at the same moment:
        # the same pings twice (a retried upload), so only one copy may count.
        events: list[dict] = []
        for trip in range(20):
            t = start + timedelta(minutes=5 * trip)
            inside = walk(LAT, LON, -300, 0, 4, t, every_s=5)
            out_lat, out_lon = offset_m(LAT, LON, 400, 0)
            batch = [*inside, (out_lat, out_lon, t + timedelta(seconds=60))]
            ra, rb = await asyncio.gather(a.pings(dev, batch), b.pings(dev, batch))
            for r in (ra, rb):
                events += r.ok(202)["events"]
        enters = [e for e in events if e["type"] == "enter"]
        exits = [e for e in events if e["type"] == "exit"]
        assert len(enters) == 20 and len(exits) == 20
        assert len({e["ts"] for e in enters}) == 20


@pytest.mark.slow
async def test_workers_answer_one_set_of_metrics(serve_process) -> None:
    """With --workers 2 every scrape, whichever worker answers it, counts every ping."""
    url = await serve_process("--workers", "2")
    # A new connection per request, so the kernel spreads them over both workers (with
    # SO_REUSEPORT, by the client port): 40 of them all reaching one worker is a 2^-39 chance.
    fresh = aiohttp.TCPConnector(force_close=True)
    async with Api(url, ADMIN_KEY) as api, aiohttp.ClientSession(connector=fresh) as s:
        dev = await api.device(unique_token())
        start = datetime.now(UTC) - timedelta(minutes=10)
        for k in range(40):
            ping = {"lat": LAT, "lon": LON, "accuracy_m": 10,
                    "ts": (start + timedelta(seconds=k)).isoformat()}
            async with s.post(f"{url}/v1/pings", json={"pings": [ping]},
                              headers={"Authorization": f"Bearer {dev.token}"}) as r:
                assert r.status == 202, await r.text()
        for _ in range(20):
            async with s.get(f"{url}/metrics") as r:
                assert metric_value(await r.text(), "geopush_pings_total",
                                    result="accepted", reason="") == 40
        # The dashboard's summary counts over the workers too.
        summary = (await api.as_role("ops", "GET", "/v1/ops/summary")).ok(200)
        assert summary["pings"]["since_start"]["accepted"] == 40
        # And its per-minute charts, counted in the database, whichever worker answers.
        ops = {"Authorization": f"Bearer {await api.key('ops')}"}
        for _ in range(6):
            async with s.get(f"{url}/v1/ops/timeseries?minutes=5", headers=ops) as r:
                assert sum((await r.json())["pings"]) == 40


def window_around(epoch_s: float, margin_s: float = 300.0) -> int:
    """A window length of one to two hours (whole minutes) whose window holding `epoch_s`
    has at least `margin_s` on either side. Windows start at multiples of their length since
    the epoch, so the remainder jumps about with the length: of the 61 lengths, the first
    usually fits (five in six do)."""
    for window in range(3600, 7201, 60):
        into = epoch_s % window
        if margin_s <= into <= window - margin_s:
            return window
    raise AssertionError(f"no window length fits {epoch_s}")


async def test_registration_limit_is_shared_by_two_serve_processes(serve_process, db) -> None:
    # One window for the whole test: a window (`[limits] register_window_s`) chosen so
    # that the database's clock is well inside it, whatever the minute.
    now = await db.fetchval("SELECT extract(epoch FROM now())::float8")
    limit = {"GEOPUSH_LIMITS_REGISTER_RATE_PER_MIN": "4",
             "GEOPUSH_LIMITS_REGISTER_WINDOW_S": str(window_around(now))}
    url_a, url_b = await asyncio.gather(serve_process(**limit), serve_process(**limit))
    async with Api(url_a, ADMIN_KEY) as a, Api(url_b, ADMIN_KEY) as b:
        app_key = await a.key("app")
        statuses = []
        for i in range(6):
            reply = await (a if i % 2 else b).call(
                "POST", "/v1/devices", key=app_key,
                json={"fcm_token": unique_token(), "platform": "ios", "locale": "en",
                      "timezone": "Europe/Paris"})
            statuses.append(reply.status)
        assert statuses == [201, 201, 201, 201, 429, 429]
        assert "Retry-After" in reply.headers
