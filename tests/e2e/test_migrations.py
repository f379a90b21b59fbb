"""Migrations on a real database: one at a time (a stairway), checksums of applied files,
and readiness while one is pending."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest

from geopush.store.migrations import Migration, MigrationChanged, available, migrate, pending
from tests.conftest import _admin_url

# The hourly partitions of `pings` are made for the hours around "now", so two databases
# migrated either side of an hour boundary differ in them: the shape leaves them out.
_HOURLY = "'^pings_[0-9]{8}h[0-9]{2}$'"
_SCHEMA = f"""
SELECT table_name, column_name, data_type, is_nullable, column_default
FROM information_schema.columns WHERE table_schema = 'public' AND table_name !~ {_HOURLY}
ORDER BY table_name, column_name
"""
_INDEXES = f"""
SELECT indexname, indexdef FROM pg_indexes
WHERE schemaname = 'public' AND tablename !~ {_HOURLY} ORDER BY 1
"""


@pytest.fixture
async def empty_url(pg_admin_url: str) -> AsyncIterator[str]:
    """A database with nothing in it, not even the migrations table."""
    name = f"geopush_empty_{os.getpid()}_{id(object())}"
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield _admin_url(pg_admin_url, name)
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _shape(conn: asyncpg.Connection) -> tuple[list[tuple], list[tuple]]:
    return ([tuple(r) for r in await conn.fetch(_SCHEMA)],
            [tuple(r) for r in await conn.fetch(_INDEXES)])


def test_migrations_are_numbered_once_each():
    versions = [m.version for m in available()]
    assert versions == sorted(set(versions)) and versions[0] == 1


async def test_stairway_each_migration_then_the_next(empty_url: str, database_url: str):
    """Every shipped migration applies on top of exactly the ones before it, and the steps
    end at the same schema as applying them all at once (the test template)."""
    steps = available()
    conn = await asyncpg.connect(empty_url)
    try:
        for i, step in enumerate(steps):
            assert await pending(conn) == [m.name for m in steps[i:]]
            assert await migrate(conn, steps[: i + 1]) == [step.name], step.name
            assert await migrate(conn, steps[: i + 1]) == []  # applying again is a no-op
        assert await pending(conn) == []
        stepped = await _shape(conn)
        rows = await conn.fetch("SELECT name, checksum FROM schema_migrations ORDER BY version")
        assert [(r["name"], r["checksum"]) for r in rows] == [(m.name, m.checksum)
                                                              for m in steps]
    finally:
        await conn.close()
    at_once = await asyncpg.connect(database_url)
    try:
        assert await _shape(at_once) == stepped
    finally:
        await at_once.close()


async def test_an_edited_applied_migration_stops_the_start(db: asyncpg.Connection):
    steps = available()
    edited = [*steps[:1], Migration(steps[1].version, steps[1].name,
                                    steps[1].sql + "\n-- an edit\n"), *steps[2:]]
    with pytest.raises(MigrationChanged, match=steps[1].name):
        await migrate(db, edited)
    # Line endings alone are no edit.
    crlf = [Migration(m.version, m.name, m.sql.replace("\n", "\r\n")) for m in steps]
    assert await migrate(db, crlf) == []


async def test_a_refused_migration_applies_nothing(empty_url: str):
    steps = available()
    conn = await asyncpg.connect(empty_url)
    try:
        await migrate(conn, steps[:1])
        changed = Migration(steps[0].version, steps[0].name, steps[0].sql + " ")
        with pytest.raises(MigrationChanged):
            await migrate(conn, [changed, *steps[1:]])
        assert await pending(conn) == [m.name for m in steps[1:]]
    finally:
        await conn.close()


async def test_checksums_are_filled_in_for_a_database_migrated_before_them(
    db: asyncpg.Connection,
):
    await db.execute("ALTER TABLE schema_migrations DROP COLUMN checksum")
    assert await migrate(db) == []
    rows = await db.fetch("SELECT version, checksum FROM schema_migrations ORDER BY version")
    assert [r["checksum"] for r in rows] == [m.checksum for m in available()]


def test_migrate_command_names_the_edited_file(database_url: str, tmp_path: Path):
    async def tamper() -> str:
        conn = await asyncpg.connect(database_url)
        try:
            return await conn.fetchval(
                "UPDATE schema_migrations SET checksum = repeat('0', 64)"
                " WHERE version = (SELECT min(version) FROM schema_migrations) RETURNING name")
        finally:
            await conn.close()

    name = asyncio.run(tamper())
    env = {**os.environ, "GEOPUSH_DATABASE_URL": database_url}
    done = subprocess.run([sys.executable, "-m", "geopush", "migrate"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert name in done.stderr and "edited after it was applied" in done.stderr


async def test_readiness_is_503_while_a_migration_is_pending(
    start_server, db: asyncpg.Connection
):
    server = await start_server()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/readyz") as r:
            assert r.status == 200
        last = available()[-1]
        await db.execute("DELETE FROM schema_migrations WHERE version = $1", last.version)
        async with http.get(f"{server.url}/readyz") as r:
            body = await r.json()
            assert r.status == 503 and r.headers["Retry-After"]
            assert body["error"]["details"][0]["migrations"] == f"pending: {last.name}"


async def test_readiness_is_503_when_the_database_is_gone(
    start_server, database_url: str, pg_admin_url: str
):
    server = await start_server()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/readyz") as r:
            assert r.status == 200
        name = urlsplit(database_url).path.lstrip("/")
        admin = await asyncpg.connect(pg_admin_url)
        try:
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        async with http.get(f"{server.url}/readyz") as r:
            body = await r.json()
            assert r.status == 503
            assert body["error"]["details"][0]["database"] == "unavailable"
