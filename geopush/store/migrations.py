"""Schema migrations: numbered SQL files applied once each, in order, under an advisory lock.

The lock makes concurrent starts of several processes safe: the first applies, the others
wait and then find nothing to do.
"""

from __future__ import annotations

import logging
import re
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

_LOCK_KEY = 0x6765_6F70  # "geop": one advisory lock id for migrations
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def available() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every migration shipped with the package, in order."""
    found = []
    for entry in resources.files("geopush.store").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply every migration not yet applied; return the names applied now."""
    applied_now: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in available():
            if version in done:
                continue
            await conn.execute(sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
            )
            applied_now.append(name)
            log.info("migration applied", extra={"migration": name})
    return applied_now


async def pending(conn: asyncpg.Connection) -> list[str]:
    """Names of migrations not applied yet (readiness fails while any are)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    done: set[int] = set()
    if exists:
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    return [name for version, name, _ in available() if version not in done]
