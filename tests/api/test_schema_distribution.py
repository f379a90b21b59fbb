"""The schema can be distributed by device, and pings expire by dropping partitions.

Read from PostgreSQL's catalogs, not from the migration files, so a later migration that adds
a device-keyed table without device_id in its keys (or drops it from one) fails here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from geopush.store.database import create_pool
from geopush.store.retention import apply_retention, partition_hour
from tests.api_client import Api
from tests.conftest import unique_token

# Tables that hold one device's data: each must keep device_id NOT NULL and in every key.
DEVICE_KEYED = {"devices", "visits", "pings", "ping_batches", "events", "decisions",
                "deliveries", "consent_log"}

# Every table (partitions aside) with a NOT NULL device_id column is device-keyed.
_TABLES_WITH_DEVICE = """
SELECT c.relname FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'device_id' AND NOT a.attisdropped
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND a.attnotnull
"""
# Every primary key, unique constraint and unique index of a table, with its column names.
_UNIQUE_KEYS = """
SELECT i.indexrelid::regclass::text AS name,
       ARRAY(SELECT a.attname FROM unnest(i.indkey) k
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k) AS columns
FROM pg_index i WHERE i.indrelid = $1::regclass AND i.indisunique
"""


async def test_every_device_keyed_table_has_device_id_in_every_key(db) -> None:
    keyed = {r["relname"] for r in await db.fetch(_TABLES_WITH_DEVICE)}
    assert keyed >= DEVICE_KEYED, f"device_id is nullable in {DEVICE_KEYED - keyed}"
    missing = []
    for table in sorted(keyed):
        keys = await db.fetch(_UNIQUE_KEYS, table)
        assert keys, f"{table} has no primary key"
        missing += [f"{table}.{k['name']} {k['columns']}" for k in keys
                    if "device_id" not in k["columns"]]
    assert not missing, "unique keys without device_id: " + ", ".join(missing)


async def test_pings_are_partitioned_by_time(db) -> None:
    strategy, column = await db.fetchrow(
        "SELECT p.partstrat::text, a.attname FROM pg_partitioned_table p"
        " JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]"
        " WHERE p.partrelid = 'pings'::regclass")
    assert (strategy, column) == ("r", "ts")


async def _hours(db) -> set[datetime]:
    names = await db.fetch("SELECT c.relname FROM pg_inherits i JOIN pg_class c"
                           " ON c.oid = i.inhrelid WHERE i.inhparent = 'pings'::regclass")
    return {h for r in names if (h := partition_hour(r["relname"])) is not None}


async def test_retention_drops_expired_hours_and_creates_the_next_day(
        api: Api, db, make_config, database_url: str) -> None:
    dev = await api.device(unique_token())
    now = datetime.now(UTC)
    old_hour = (now - timedelta(days=40)).replace(minute=0, second=0, microsecond=0)
    await db.execute("SELECT geopush_ping_partitions($1, $2)", old_hour,
                     old_hour + timedelta(hours=1))
    assert old_hour in await _hours(db)
    for minute in (5, 35):
        await db.execute("INSERT INTO pings (device_id, ts, lat, lon, accuracy_m)"
                         " VALUES ($1, $2, 1, 1, 5)", dev.device_id,
                         old_hour + timedelta(minutes=minute))
    # A ping of the current hour stays, and lands in an hourly partition, not the default.
    (await api.pings(dev, [(52.52, 13.405, now - timedelta(seconds=30))])).ok(202)
    assert await db.fetchval("SELECT count(*) FROM pings_default") == 0
    await db.execute("SELECT geopush_ping_partitions($1, $2)", now, now)  # a no-op

    pool = await create_pool(database_url, 2)
    try:
        removed = await apply_retention(pool, make_config(privacy={"ping_retention_days": 30}))
    finally:
        await pool.close()
    assert removed == 2
    hours = await _hours(db)
    assert old_hour not in hours
    this_hour = now.replace(minute=0, second=0, microsecond=0)
    assert {this_hour + timedelta(hours=h) for h in range(24)} <= hours
    assert await db.fetchval("SELECT count(*) FROM pings") == 1


async def test_every_customer_keyed_table_has_customer_id_in_every_key(db) -> None:
    """The tables distributed by customer_id on a Citus cluster (SPEC section 9) keep it
    NOT NULL and in every unique key, on one PostgreSQL too, so the layout never fails."""
    from geopush.store.distribution import CUSTOMER_KEYED

    missing = []
    for table in CUSTOMER_KEYED:
        assert await db.fetchval(
            "SELECT attnotnull FROM pg_attribute WHERE attrelid = $1::regclass"
            " AND attname = 'customer_id'", table), table
        keys = await db.fetch(_UNIQUE_KEYS, table)
        assert keys, f"{table} has no primary key"
        missing += [f"{table}.{k['name']} {k['columns']}" for k in keys
                    if "customer_id" not in k["columns"]]
    assert not missing, "unique keys without customer_id: " + ", ".join(missing)
