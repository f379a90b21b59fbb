"""geopush on a real Citus cluster (SPEC section 9): a coordinator and two workers.

The named set below runs tests written for one PostgreSQL again, unchanged, against the
cluster: this module's `database_url` gives each of them a fresh database on the cluster,
migrated and laid out by `geopush migrate`'s code, and every fixture built on it (the
server, the API client, the `db` connection) follows. Beside them, the layout is read from
Citus' own catalog.

Without the Citus source beside the checkout (`../shared/vendor`) the module is reported as
not run, with the reason; a failed build or start is an error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from geopush.store.distribution import CUSTOMER_KEYED, DEVICE_KEYED, LOCAL, REFERENCE
from geopush.store.migrations import migrate

# The named set, on the cluster. Imported test functions run here with this module's
# fixtures (a database on the cluster), exactly as written.
from tests.api.test_basket_pipeline import (  # noqa: F401
    test_planted_rule_audience_and_recommended_offer,
    test_upsell_average_baskets_per_segment,
)
from tests.api.test_core_loop import test_walk_into_circle_sends_one_french_push  # noqa: F401
from tests.api.test_crm_imports import (  # noqa: F401
    test_a_customer_named_by_transactions_first_is_completed_later,
    test_cli_imports_stores_geofences_customers_and_transactions,
    test_customer_profile_and_erasure,
    test_duplicates_are_counted_within_the_file_and_against_the_database,
    test_transactions_report_bad_rows_by_line_and_import_the_rest,
)
from tests.api.test_decisions_pipeline import (  # noqa: F401
    test_customer_with_two_phones_gets_one_push,
    test_daily_cap_counts_the_customers_every_phone,
    test_max_sends_budget_across_devices,
)
from tests.api.test_geolife_http_replay import (  # noqa: F401
    test_geolife_replay_over_http_matches_reference,
)
from tests.api.test_learning_levers import (  # noqa: F401
    test_levers_show_treatment_visiting_twice_as_often,
)
from tests.api.test_learning_relationship import (  # noqa: F401
    test_device_erasure_takes_its_preferences_and_their_log,
    test_ignored_category_pauses_until_an_open,
    test_interests_weekly_maximum_and_personal_quiet_hours_decide,
    test_no_discount_on_the_appliance_bought_at_full_price_yesterday,
    test_preferences_are_the_customers_on_every_phone_and_logged,
)
from tests.api.test_learning_value import test_value_per_store_and_per_segment  # noqa: F401
from tests.api.test_loyalty_challenges import (  # noqa: F401
    test_purchases_earn_points_at_import_and_complete_challenges,
)
from tests.api.test_loyalty_checkins import (  # noqa: F401
    test_a_checkin_counts_once_per_store_per_local_day,
    test_badges_once_each_under_concurrent_dwells_of_one_customer,
)
from tests.api.test_offer_stats import (  # noqa: F401
    test_conversions_and_lift_through_the_pipeline,
    test_conversions_count_whenever_the_store_came_to_be,
)
from tests.api.test_pings_api import (  # noqa: F401
    test_dwell_from_sweeper_when_phone_stops_sending,
)
from tests.api.test_privacy import (  # noqa: F401
    test_customer_erasure,
    test_device_erasure_removes_personal_data_keeps_aggregates,
    test_pings_older_than_retention_are_deleted,
)
from tests.api.test_segments_db import test_segments_of_a_known_population  # noqa: F401
from tests.api.test_service_recovery_e2e import (  # noqa: F401
    receiver,
    test_bad_visit_is_heard_recovered_and_the_customer_returns,
)
from tests.api.test_transaction_lines import (  # noqa: F401
    test_a_basket_split_across_files_still_counts_once,
    test_lines_of_one_transaction_are_one_basket_and_one_visit_for_frat,
)
from tests.citus_cluster import Cluster, ClusterUnavailable
from tests.e2e.test_sender_crash import (  # noqa: F401
    test_sigkill_mid_send_loses_nothing_and_repeats_at_most_one_batch,
)

pytestmark = pytest.mark.citus


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    started = time.perf_counter()
    try:
        running = Cluster.start()
    except ClusterUnavailable as exc:
        pytest.skip(f"Citus cluster tests not run: {exc}")
    print(f"\nCitus cluster (coordinator + 2 workers) up in {time.perf_counter() - started:.1f} s")
    yield running
    running.stop()


@pytest.fixture
async def database_url(cluster: Cluster) -> AsyncIterator[str]:
    """A fresh database on the cluster, migrated and distributed."""
    url = await cluster.new_database()
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn, distributed=True)
    finally:
        await conn.close()
    yield url
    await cluster.drop_database(url)


_LAYOUT = """
SELECT logicalrelid::regclass::text AS t, partmethod::text AS method,
       column_to_column_name(logicalrelid, partkey) AS col, colocationid
FROM pg_dist_partition
"""


async def test_the_tables_are_laid_out_as_section_9_says(db: asyncpg.Connection) -> None:
    layout = {r["t"]: r for r in await db.fetch(_LAYOUT)}
    for table in DEVICE_KEYED:
        assert (layout[table]["method"], layout[table]["col"]) == ("h", "device_id"), table
        assert layout[table]["colocationid"] == layout["devices"]["colocationid"], table
    for table in CUSTOMER_KEYED:
        assert (layout[table]["method"], layout[table]["col"]) == ("h", "customer_id"), table
        assert layout[table]["colocationid"] == layout["customers"]["colocationid"], table
    for table in REFERENCE:
        assert layout[table]["method"] == "n", table
    # Every table of the schema has its place: a new one must be added to the layout.
    tables = {r["relname"] for r in await db.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition")}
    # The rest stays on the coordinator (Citus may record one as a "citus local" table,
    # when it references a reference table: still on the coordinator alone).
    assert tables - set(layout) <= set(LOCAL) and set(LOCAL) <= tables
    assert not [t for t in LOCAL if t in layout and layout[t]["method"] == "h"]
    # From pg_dist_colocation: one group per key, each distributed by its key's type.
    groups = {r["colocationid"]: r for r in await db.fetch(
        "SELECT colocationid, shardcount, distributioncolumntype::regtype::text AS type"
        " FROM pg_dist_colocation")}
    assert groups[layout["devices"]["colocationid"]]["type"] == "uuid"
    assert groups[layout["customers"]["colocationid"]]["type"] == "text"
    assert layout["devices"]["colocationid"] != layout["customers"]["colocationid"]
    assert layout["transactions"]["colocationid"] == layout["customers"]["colocationid"]
    # Both workers hold shards of the device-keyed tables.
    nodes = await db.fetchval(
        "SELECT count(DISTINCT nodeport) FROM pg_dist_shard_placement p"
        " JOIN pg_dist_shard s USING (shardid) WHERE s.logicalrelid = 'devices'::regclass")
    assert nodes == 2


async def test_migrate_again_changes_nothing(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        assert await migrate(conn, distributed=True) == []
        laid = {r["t"] for r in await conn.fetch(_LAYOUT)}
        assert set(DEVICE_KEYED) | set(CUSTOMER_KEYED) | set(REFERENCE) <= laid
    finally:
        await conn.close()


async def test_a_cluster_migrated_before_0040_is_migrated_on_with_its_rows(
    cluster: Cluster,
) -> None:
    """A cluster migrated by the last release (every migration but 0040) holds transactions
    as a reference table; the next `geopush migrate` applies 0040, distributes them by
    customer_id with their rows, and records every migration's checksum, as on one
    PostgreSQL."""
    from geopush.store.migrations import available

    steps = available()
    url = await cluster.new_database()
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn, [m for m in steps if m.version != 40], distributed=True)
        assert await conn.fetchval(
            "SELECT partmethod::text FROM pg_dist_partition"
            " WHERE logicalrelid = 'transactions'::regclass") == "n"
        await conn.execute(
            "INSERT INTO transactions (transaction_id, customer_id, ts, amount)"
            " VALUES ('T1', 'C1', now(), 5), ('T2', 'C2', now(), 7)")
        assert await migrate(conn, distributed=True) == [
            m.name for m in steps if m.version == 40]
        row = await conn.fetchrow(
            "SELECT partmethod::text AS method,"
            " column_to_column_name(logicalrelid, partkey) AS col FROM pg_dist_partition"
            " WHERE logicalrelid = 'transactions'::regclass")
        assert (row["method"], row["col"]) == ("h", "customer_id")
        assert await conn.fetchval("SELECT sum(amount)::int FROM transactions") == 12
        rows = await conn.fetch("SELECT name, checksum FROM schema_migrations")
        assert {(r["name"], r["checksum"]) for r in rows} == {(m.name, m.checksum)
                                                              for m in steps}
        assert await migrate(conn, distributed=True) == []
    finally:
        await conn.close()
        await cluster.drop_database(url)


_NODE_OF_DEVICE = """
SELECT p.nodeport FROM pg_dist_shard_placement p
WHERE p.shardid = get_shard_id_for_distribution_column('devices', $1::uuid)
"""


_PLACEMENT = """
SELECT s.shardid, n.nodeport
FROM unnest($1::uuid[]) AS d(device_id)
JOIN pg_dist_shard s ON s.shardid = get_shard_id_for_distribution_column('devices', d.device_id)
JOIN pg_dist_placement p ON p.shardid = s.shardid
JOIN pg_dist_node n ON n.groupid = p.groupid
"""
# A table's shard for the same hash range sits where the devices shard does (co-location).
_COLOCATED = """
SELECT bool_and(pd.groupid = pt.groupid)
FROM pg_dist_shard sd JOIN pg_dist_placement pd ON pd.shardid = sd.shardid
JOIN pg_dist_shard st ON st.logicalrelid = $1::regclass
     AND st.shardminvalue = sd.shardminvalue
JOIN pg_dist_placement pt ON pt.shardid = st.shardid
WHERE sd.shardid = $2
"""


async def test_one_customers_phones_on_two_workers_share_cooldown_and_cap(
    cluster: Cluster, api, db: asyncpg.Connection
) -> None:
    """The customer lock holds across workers: the customer's phones are placed on
    different workers on purpose, enter the same store at once, and one push goes."""
    from tests.api.test_decisions_pipeline import LAT, LON, _walk_in
    from tests.conftest import unique_token

    fence = await api.circle(LAT, LON, 150)
    offer = await api.offer(geofence_ids=[fence["id"]], cooldown_s=86400)
    phones: dict[int, object] = {}
    for _ in range(40):  # registration picks device ids; keep one phone per worker
        phone = await api.device(unique_token(), customer_id="C-two-workers")
        phones.setdefault(await db.fetchval(_NODE_OF_DEVICE, phone.device_id), phone)
        if len(phones) == 2:
            break
    assert len(phones) == 2, "no two phones on different workers"
    # From Citus' own catalog: the phones' device rows (and, co-located, their visits,
    # events, decisions and deliveries) are in two shards placed on the two workers.
    placed = await db.fetch(_PLACEMENT, [p.device_id for p in phones.values()])
    assert len({r["shardid"] for r in placed}) == 2
    assert {r["nodeport"] for r in placed} == {w.port for w in cluster.workers}
    for table in ("visits", "events", "decisions", "deliveries"):
        assert await db.fetchval(_COLOCATED, table, placed[0]["shardid"]), table
    await asyncio.gather(*(_walk_in(api, p) for p in phones.values()))
    rows = await db.fetch("SELECT outcome, reason FROM decisions WHERE offer_id = $1",
                          offer["id"])
    assert sorted((r["outcome"], r["reason"] or "") for r in rows) == [
        ("queued", ""), ("suppressed", "cooldown")]


async def test_a_stopped_worker_fails_only_its_devices_and_loses_nothing(
    cluster: Cluster, api, db: asyncpg.Connection, report
) -> None:
    """One worker stops during ingest: the devices whose shards live there get 503 with
    Retry-After, the others go on; once it is back, they recover without restarting
    geopush, and every acknowledged ping is in the database."""
    from datetime import UTC, datetime, timedelta

    from tests.conftest import unique_token
    from tests.eventually import eventually

    phones = [await api.device(unique_token()) for _ in range(8)]
    node = {p.device_id: await db.fetchval(_NODE_OF_DEVICE, p.device_id) for p in phones}
    down = cluster.workers[1]
    on_down = [p for p in phones if node[p.device_id] == down.port]
    on_up = [p for p in phones if node[p.device_id] != down.port]
    assert on_down and on_up, "both workers hold some of the devices"
    start = datetime.now(UTC) - timedelta(minutes=30)
    acknowledged = 0
    step = 0

    async def ping(phone) -> int:
        nonlocal acknowledged, step
        step += 1
        reply = await api.pings(phone, [(39.9, 116.4, start + timedelta(seconds=10 * step))])
        if reply.status == 202:
            acknowledged += reply.body["accepted"]
        return reply.status

    assert {await ping(p) for p in phones} == {202}
    cluster.stop_node(down)
    try:
        refused = []
        for phone in phones:
            status = await ping(phone)
            if phone in on_up:
                assert status == 202
            else:
                refused.append(status)
        assert set(refused) == {503}
        reply = await api.pings(on_down[0], [(39.9, 116.4, datetime.now(UTC))])
        assert reply.status == 503 and reply.headers.get("Retry-After")
    finally:
        cluster.start_node(down)

    async def recovered() -> bool:
        return all([await ping(p) == 202 for p in on_down])

    await eventually(recovered, within=60, every=0.5)
    stored = await db.fetchval("SELECT count(*) FROM pings")
    report(f"worker stopped: {len(on_up)} devices kept going, {len(on_down)} got 503 until"
           f" it came back; {acknowledged} pings acknowledged, {stored} stored")
    assert stored == acknowledged


_SHAPE = """
SELECT table_name, column_name, data_type, is_nullable, column_default
FROM information_schema.columns WHERE table_schema = 'public' AND table_name !~ '^pings_p'
ORDER BY table_name, column_name
"""


async def _layout_groups(conn: asyncpg.Connection) -> set[tuple[str, str, str | None,
                                                                  frozenset[str]]]:
    """Each table's method and key, with the tables it is co-located with (Citus' own
    colocation ids differ between databases; the groups must not)."""
    rows = await conn.fetch(_LAYOUT)
    groups: dict[int, set[str]] = {}
    for r in rows:
        groups.setdefault(r["colocationid"], set()).add(r["t"])
    return {(r["t"], r["method"], r["col"], frozenset(groups[r["colocationid"]]))
            for r in rows if r["method"] != "n"} | {(r["t"], "n", None, frozenset())
                                                     for r in rows if r["method"] == "n"}


# The first migration a laid-out cluster must take step by step. The ones before it do not
# lay out one by one: 0001's unique token hash on devices (dropped by 0007) and 0051's
# trigger on offers (dropped by 0052) are what Citus refuses on distributed and reference
# tables, so a cluster starts from all of them at once. 0040 on a laid-out cluster has a
# test of its own (above).
_STEPPED_FROM = 53


async def test_stairway_on_the_cluster(cluster: Cluster, database_url: str) -> None:
    """Every later migration applies on a laid-out cluster on top of exactly the ones
    before it, each step laid out as `geopush migrate` does, and the steps end where
    migrating at once ends: same tables and columns, same layout, same checksums."""
    from geopush.store.migrations import available, pending

    steps = available()
    url = await cluster.new_database()
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn, [m for m in steps if m.version < _STEPPED_FROM], distributed=True)
        for i, step in enumerate(steps):
            if step.version < _STEPPED_FROM:
                continue
            assert await pending(conn) == [m.name for m in steps[i:]]
            assert await migrate(conn, steps[: i + 1], distributed=True) == [step.name]
            assert await migrate(conn, steps[: i + 1], distributed=True) == []
        rows = await conn.fetch("SELECT name, checksum FROM schema_migrations ORDER BY version")
        assert [(r["name"], r["checksum"]) for r in rows] == [(m.name, m.checksum)
                                                              for m in steps]
        stepped = ([tuple(r) for r in await conn.fetch(_SHAPE)], await _layout_groups(conn))
    finally:
        await conn.close()
        await cluster.drop_database(url)
    at_once = await asyncpg.connect(database_url)
    try:
        assert ([tuple(r) for r in await at_once.fetch(_SHAPE)],
                await _layout_groups(at_once)) == stepped
    finally:
        await at_once.close()
