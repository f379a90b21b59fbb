"""Every `geopush` command as an operator runs it (a real process against a real database),
and the daily segment recompute as the server schedules it. `geopush demo` has its own
test (tests/e2e/test_demo.py); `import` is covered in tests/api/test_crm_imports.py."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from geopush.store.migrations import available
from tests.conftest import ADMIN_KEY
from tests.e2e.test_migrations import empty_url  # noqa: F401  (fixture)
from tests.e2e.test_multiprocess import _free_port, _wait_ready
from tests.eventually import eventually


def _geopush(*args: str, database_url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GEOPUSH_DATABASE_URL": database_url}
    return subprocess.run([sys.executable, "-m", "geopush", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


async def test_migrate_brings_an_empty_database_up_to_date(empty_url: str,  # noqa: F811
                                                           tmp_path: Path) -> None:
    done = await asyncio.to_thread(_geopush, "migrate", database_url=empty_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "schema up to date" in done.stdout
    conn = await asyncpg.connect(empty_url)
    try:
        names = [r["name"] for r in
                 await conn.fetch("SELECT name FROM schema_migrations ORDER BY version")]
    finally:
        await conn.close()
    assert names == [m.name for m in available()]


async def test_keys_create_prints_a_key_the_api_accepts(
    database_url: str, db: asyncpg.Connection, start_server: Any, tmp_path: Path
) -> None:
    done = await asyncio.to_thread(_geopush, "keys", "create", "--role", "marketer",
                                   "--name", "crm sync", database_url=database_url,
                                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    row = await db.fetchrow("SELECT name, role, key_hash FROM api_keys")
    assert (row["name"], row["role"]) == ("crm sync", "marketer")
    assert bytes(row["key_hash"]) == hashlib.sha256(key.encode()).digest()  # only the hash
    server = await start_server()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/v1/stores",
                            headers={"Authorization": f"Bearer {key}"}) as r:
            assert r.status == 200
        async with http.post(f"{server.url}/v1/keys", json={"role": "ops"},
                             headers={"Authorization": f"Bearer {key}"}) as r:
            assert r.status == 403  # a marketer key, not an admin one


async def _customer_with_purchases(db: asyncpg.Connection, customer: str, n: int) -> None:
    await db.execute("INSERT INTO customers (customer_id, created_at) VALUES ($1, $2)",
                     customer, datetime.now(UTC) - timedelta(days=400))
    for i in range(n):
        await db.execute(
            "INSERT INTO transactions (transaction_id, customer_id, ts, amount)"
            " VALUES ($1, $2, $3, 25)", f"{customer}-{i}", customer,
            datetime.now(UTC) - timedelta(days=2 + 50 * i))


async def test_segments_recompute_scores_every_customer(
    database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    await _customer_with_purchases(db, "C-1", 6)
    assert await db.fetchval("SELECT segment FROM customers") == "new"
    done = await asyncio.to_thread(_geopush, "segments", "recompute",
                                   database_url=database_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    row = await db.fetchrow("SELECT segment, segment_computed_at FROM customers")
    assert row["segment"] != "new" and row["segment_computed_at"] is not None
    assert answer["customers"] == 1 and answer["segments"][row["segment"]] == 1
    assert await db.fetchval("SELECT count(*) FROM segment_runs") == 1


async def test_the_daily_recompute_catches_up_at_start(
    start_server: Any, db: asyncpg.Connection
) -> None:
    """The daily run was due this hour and the last one is two days old: a starting
    server runs it at once."""
    await _customer_with_purchases(db, "C-2", 6)
    await db.execute("INSERT INTO segment_runs (computed_at, counts) VALUES ($1, '{}')",
                     datetime.now(UTC) - timedelta(days=2))
    hour = datetime.now(UTC).hour
    await start_server(segments={"daily_recompute_hour_utc": hour})

    async def recomputed() -> bool:
        return await db.fetchval("SELECT count(*) FROM segment_runs") == 2

    await eventually(recomputed)
    assert await db.fetchval("SELECT segment FROM customers") != "new"


async def test_the_daily_recompute_waits_for_its_hour(
    start_server: Any, db: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    # Ran a minute ago: nothing is due until tomorrow's hour.
    caplog.set_level(logging.INFO, logger="geopush.background")
    await db.execute("INSERT INTO segment_runs (computed_at, counts) VALUES ($1, '{}')",
                     datetime.now(UTC) - timedelta(minutes=1))
    hour = datetime.now(UTC).hour
    await start_server(segments={"daily_recompute_hour_utc": hour})

    async def scheduled() -> list[str]:
        """the daily job chose when it runs next"""
        return [r.getMessage() for r in caplog.records
                if r.getMessage().startswith("next daily segment recompute at ")]

    [message] = await eventually(scheduled)
    due = datetime.fromisoformat(message.rsplit(" ", 1)[1])
    assert due.hour == hour and due > datetime.now(UTC) + timedelta(hours=22)
    assert await db.fetchval("SELECT count(*) FROM segment_runs") == 1


async def _serve_log(database_url: str, tmp_path: Path, *args: str) -> str:
    """Start `geopush ARGS`, wait until ready, stop it; what it logged."""
    port = _free_port()
    env = {**os.environ, "GEOPUSH_DATABASE_URL": database_url,
           "GEOPUSH_SERVER_PORT": str(port), "GEOPUSH_SERVER_RUN_SENDER": "false",
           "GEOPUSH_AUTH_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY}
    log_file = tmp_path / f"serve-{port}.log"
    with log_file.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "geopush", *args], cwd=tmp_path,
                                env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
        try:
            await _wait_ready(f"http://127.0.0.1:{port}", proc)
        finally:
            proc.terminate()
            await asyncio.to_thread(proc.wait, 30)
    return log_file.read_text()


def _levels(log: str) -> set[str]:
    levels = set()
    for line in log.splitlines():
        if line.startswith("{"):
            levels.add(json.loads(line)["level"])
    return levels


@pytest.mark.slow
async def test_serve_honours_the_log_level(database_url: str, tmp_path: Path) -> None:
    # INFO by default: the index load is logged ("geofence index updated", at start too).
    default = await _serve_log(database_url, tmp_path, "serve")
    assert "geofence index updated" in default and "info" in _levels(default)
    # Before the command or on it, WARNING silences it.
    for args in (("--log-level", "warning", "serve"), ("serve", "--log-level", "WARNING")):
        quiet = await _serve_log(database_url, tmp_path, *args)
        assert "geofence index updated" not in quiet, args
        assert not _levels(quiet) & {"debug", "info"}, args
