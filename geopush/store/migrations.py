"""Schema migrations: numbered SQL files applied once each, in order, under an advisory lock.

The lock makes concurrent starts of several processes safe: the first applies, the others
wait and then find nothing to do.

Each applied migration's SHA-256 is kept in `schema_migrations.checksum`. A file edited
after it was applied somewhere would leave that database different from a fresh one, so the
start stops with `MigrationChanged` naming the file. Rows from before checksums existed are
filled in from the files on the first start that knows about them.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import asyncpg

from geopush.store.distribution import Distributed, distribute, tables_distributed
from geopush.store.sql_split import statements

log = logging.getLogger(__name__)

_LOCK_KEY = 0x6765_6F70  # "geop": one advisory lock id for migrations
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        # Line endings normalized: a checkout that turns \n into \r\n edits nothing.
        return hashlib.sha256(self.sql.replace("\r\n", "\n").encode("utf-8")).hexdigest()


class MigrationChanged(RuntimeError):
    """An applied migration's file no longer matches what was applied."""

    def __init__(self, name: str, applied: str, now: str) -> None:
        super().__init__(
            f"migration {name} was edited after it was applied to this database"
            f" (applied sha256 {applied[:12]}, file now {now[:12]}); restore the file as"
            " shipped and put the change in a new migration"
        )
        self.name = name


def available() -> list[Migration]:
    """Every migration shipped with the package, in order."""
    found = []
    for entry in resources.files("geopush.store").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name,
                                   entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


async def _ensure_table(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now(), checksum text)"
    )
    # A table from before checksums: add the column (only then, so that an ordinary start
    # takes no exclusive lock on the table readiness probes read).
    has_checksum = await conn.fetchval(
        "SELECT true FROM information_schema.columns WHERE table_schema = current_schema()"
        " AND table_name = 'schema_migrations' AND column_name = 'checksum'"
    )
    if not has_checksum:
        await conn.execute("ALTER TABLE schema_migrations ADD COLUMN checksum text")


async def migrate(
    conn: asyncpg.Connection, migrations: Sequence[Migration] | None = None,
    distributed: Distributed = "auto",
) -> list[str]:
    """Apply every migration not yet applied; return the names applied now.

    Raises `MigrationChanged` (and applies nothing) when an applied one was edited.
    `migrations` defaults to the shipped files; tests pass a prefix to step through them.
    On a Citus coordinator the tables are then laid out across the cluster
    (`geopush.store.distribution`), each in a transaction of its own.
    """
    applied = await _apply(conn, migrations)
    await distribute(conn, distributed)
    return applied


async def _apply(
    conn: asyncpg.Connection, migrations: Sequence[Migration] | None
) -> list[str]:
    todo = available() if migrations is None else list(migrations)
    applied_now: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await _ensure_table(conn)
        done = {r["version"]: r["checksum"]
                for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")}
        backfill: list[tuple[int, str]] = []
        for m in todo:
            if m.version not in done:
                continue
            if done[m.version] is None:
                backfill.append((m.version, m.checksum))
            elif done[m.version] != m.checksum:
                raise MigrationChanged(m.name, done[m.version], m.checksum)
        if backfill:
            await conn.executemany(
                "UPDATE schema_migrations SET checksum = $2 WHERE version = $1", backfill
            )
        # On a cluster already laid out, Citus propagates each DDL statement to the workers
        # by its text, and refuses a text of several: there a file runs one statement at
        # a time (the same statements, in the same transaction).
        one_by_one = any(m.version not in done for m in todo) and await tables_distributed(
            conn)
        for m in todo:
            if m.version in done:
                continue
            for statement in statements(m.sql) if one_by_one else [m.sql]:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                m.version, m.name, m.checksum,
            )
            applied_now.append(m.name)
            log.info("migration applied", extra={"migration": m.name})
    return applied_now


async def pending(conn: asyncpg.Connection) -> list[str]:
    """Names of migrations not applied yet (readiness fails while any are)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    done: set[int] = set()
    if exists:
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    return [m.name for m in available() if m.version not in done]
