"""`geopush demo` as a user runs it: a real process, bounded in time."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.eventually import eventually

pytestmark = pytest.mark.slow

SEGMENTS = {"new", "good", "best", "at_risk", "inactive"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _demo(data_dir: Path, port: int, duration: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "geopush", "demo", "--duration", str(duration), "--port",
         str(port), "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def _line(proc: subprocess.Popen[str], pattern: str, within: float) -> re.Match[str]:
    """The first stdout line matching `pattern`, read off the event loop."""
    assert proc.stdout is not None
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        line = await asyncio.to_thread(proc.stdout.readline)
        if not line and proc.poll() is not None:
            break
        match = re.search(pattern, line)
        if match:
            return match
    stderr = proc.stderr.read() if proc.poll() is not None and proc.stderr else ""
    raise AssertionError(f"no line matching {pattern!r} (exit {proc.poll()}); stderr: {stderr}")


async def test_demo_runs_the_whole_product_for_a_minute(tmp_path: Path) -> None:
    port = _free_port()
    proc = _demo(tmp_path / "data", port, 60)
    try:
        console = await _line(proc, r"console:\s+(\S+)\s+\(marketer key: (\S+)\)", 120)
        dashboard = await _line(proc, r"dashboard:\s+(\S+)\s+\(ops key: (\S+)\)", 5)
        emulator = await _line(proc, r"FCM emulator: (\S+)/messages", 5)
        url, marketer = console.group(1), console.group(2)
        assert url == f"http://127.0.0.1:{port}/console"
        ops = dashboard.group(2)

        # A second demo on the same data says so and leaves the first one alone.
        second = _demo(tmp_path / "data", _free_port(), 10)
        _, err = await asyncio.to_thread(second.communicate, timeout=60)
        assert second.returncode == 1
        assert "already running" in err

        async with aiohttp.ClientSession() as http:
            async with http.get(url) as r:
                assert r.status == 200 and "geopush console" in await r.text()
            auth = {"Authorization": f"Bearer {marketer}"}
            async with http.get(f"http://127.0.0.1:{port}/v1/segments", headers=auth) as r:
                segments = (await r.json())["segments"]
            assert {k for k, v in segments.items() if v > 0} >= SEGMENTS, segments

            async def pushes_at_emulator() -> list[dict]:
                async with http.get(f"{emulator.group(1)}/messages") as r:
                    return list((await r.json())["messages"])
            pushes = await eventually(pushes_at_emulator, within=50, every=1,
                                      what="a push at the emulator")
            assert all(m["message"]["notification"]["title"] for m in pushes)
            assert "{first_name}" not in str(pushes) and "{store_name}" not in str(pushes)
            async with http.get(f"http://127.0.0.1:{port}/v1/ops/summary",
                                headers={"Authorization": f"Bearer {ops}"}) as r:
                summary = await r.json()
            assert summary["deliveries"]["by_status"]["sent"] >= 1
            # The world's four, the service story's two, and the learning story's matcha
            # offer once it has got that far.
            assert len(summary["offers"]) in (4 + 2, 4 + 2 + 1)

            # Foresight (SPEC 16): the shoppers' visits so far are history enough for a
            # preview to say something real: the demo's offers, replayed, meet visitors.
            async with http.get(f"http://127.0.0.1:{port}/v1/offers", headers=auth) as r:
                offers = (await r.json())["items"]
            triggered = 0
            for offer in offers:
                if offer["trigger"] not in ("enter", "dwell", "exit"):
                    continue  # feedback and recovery answer answers, not visits: 422
                async with http.post(f"http://127.0.0.1:{port}/v1/offers/preview",
                                     headers=auth, json={"offer": offer, "days": 1}) as r:
                    assert r.status == 200, await r.text()
                    triggered += (await r.json())["triggered"]
            assert triggered > 0

        # Ctrl-C stops everything cleanly.
        proc.send_signal(signal.SIGINT)
        out, err = await asyncio.to_thread(proc.communicate, timeout=60)
        assert proc.returncode == 0, err
        assert "geopush demo: stopped." in out
        # The summary, not the logs, is on the terminal; the logs are in the file.
        assert "pushes     sent" in out and '"level"' not in out + err
        # The service story: a bad visit, the store's verified alert, the French recovery
        # push, the shopper back.
        assert "store alert: service_recovery" in out and "signature verified" in out
        assert "recovery push: Toutes nos excuses, Camille" in out
        assert "returned: yes, case recovered" in out
        # The learning story: a shopper's interests, a gold customer greeted by name.
        assert "preferences: Ana wants bakery, at most 3 a week" in out
        assert "vip arrival: Mei (gold" in out and "staff alerted" in out
        # ... and a shopper who never opens an offer stops getting it.
        assert ("fatigue: Leo left 5 matcha pushes unopened; his next visit was held back"
                " (fatigue)") in out
        assert (tmp_path / "data" / "demo.log").stat().st_size > 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            await asyncio.to_thread(proc.wait, 30)
    # The embedded PostgreSQL stopped with it.
    assert not (tmp_path / "data" / "postgres" / "postmaster.pid").exists()
