"""Past one PostgreSQL: the tables' layout on a Citus cluster (SPEC section 9).

`geopush migrate` runs the same migrations on one PostgreSQL and on a Citus coordinator;
on Citus it then lays the tables out, once each (it asks Citus' catalog which are done, so
a later run picks up tables that new migrations add and leaves the rest alone):

- every device-keyed table is distributed by `device_id`, co-located with `devices`, so a
  ping batch (the device row, its visits, pings, events, decisions and deliveries) is one
  shard group on one worker, and its statements are routed there whole;
- customer-keyed tables (`customers`, their recommendations and their transactions) are
  distributed by `customer_id`, co-located with `customers`: a decision's read of the
  customer's purchases is routed with the customer row;
- the small, read-mostly tables every query joins with (keys, stores, geofences, offers,
  challenges, basket rules) and the small bookkeeping tables are reference tables, a copy
  on every node;
- the loyalty ledger, badges and challenge completions are reference tables too. Their key,
  `subject`, is a device before sign-in and a customer after (the merge of SPEC section 11
  rewrites it), and Citus cannot change a row's distribution column; their volume is
  bounded (a check-in per store-day, a badge once), so a copy per node is affordable.

Locks: every geopush process connects to the coordinator, so the advisory locks that keep
one writer per device, one decision per customer at a time and one `max_sends` count per
offer are taken on one node, the coordinator, and hold for the whole cluster.
"""

from __future__ import annotations

import logging
from typing import Literal

import asyncpg

log = logging.getLogger(__name__)

Distributed = bool | Literal["auto"]

DEVICE_KEYED = ("devices", "visits", "pings", "ping_batches", "events", "decisions",
                "deliveries", "consent_log")
# `transactions` was a reference table before migration 0040 put customer_id in its key;
# a cluster laid out then has it converted (undistributed, then distributed) by `migrate`.
CUSTOMER_KEYED = ("customers", "customer_recommendations", "transactions")
REFERENCE = ("api_keys", "stores", "geofences", "offers", "challenges",
             "basket_rules", "basket_runs", "segment_runs", "decisions_pruned",
             "events_daily", "loyalty_ledger", "loyalty_badges",
             "challenge_completions",
             # SPEC 15: keyed by subject (a device, then its customer), like the loyalty
             # tables; one row per subject, or per subject and category, and a log of changes.
             "preferences", "preference_log", "category_fatigue",
             "recognition_arrivals",
             # SPEC 16: when each offer was active; written with every offer change.
             "offer_status_log")
# Tables no query joins with another, kept on the coordinator alone (every process goes
# through it): the migrations' record, the rate limits' counters, the senders' pause, the
# customer proofs already spent, and the offers' lock rows (locking a row of a reference
# table takes Citus' own locks on every copy: two deciders deadlocked on them). Hot, tiny,
# and a copy per node would only slow them.
LOCAL = ("schema_migrations", "rate_windows", "sender_pause", "link_proofs", "offer_locks",
         # Service quality (SPEC section 14): the store alerts outbox (claimed FOR UPDATE
         # SKIP LOCKED, which a reference table's copies would make cluster-wide), and the
         # answers and cases, one row per rated visit, read beside it.
         "store_alerts", "feedback_responses", "service_cases")


# Whether the table's primary key holds the column (Citus enforces a key only then).
_KEY_HOLDS = """
SELECT EXISTS (
    SELECT 1 FROM pg_index i
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
    WHERE i.indrelid = $1::regclass AND i.indisprimary AND a.attname = $2)
"""


async def citus_present(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval(
        "SELECT true FROM pg_extension WHERE extname = 'citus'"))


async def tables_distributed(conn: asyncpg.Connection) -> bool:
    """Whether this database's tables are laid out on Citus (`devices` is distributed)."""
    if not await citus_present(conn):
        return False
    return bool(await conn.fetchval(
        "SELECT true FROM pg_dist_partition WHERE logicalrelid = to_regclass('devices')"))


async def distribute(conn: asyncpg.Connection, distributed: Distributed = "auto") -> list[str]:
    """Lay out the tables on Citus as the module says; return the tables laid out now.

    `auto`: when the citus extension is installed in this database. `True` without it is
    an error that says so; `False` leaves every table local.
    """
    if distributed is False:
        return []
    present = await citus_present(conn)
    if not present:
        if distributed is True:
            raise RuntimeError("[database] distributed = true, but the citus extension is "
                               "not installed in this database (CREATE EXTENSION citus)")
        return []
    methods = {r["t"]: r["m"] for r in await conn.fetch(
        "SELECT logicalrelid::regclass::text AS t, partmethod::text AS m"
        " FROM pg_dist_partition")}
    laid: list[str] = []
    keyed = [(t, "device_id") for t in DEVICE_KEYED] + [(t, "customer_id")
                                                       for t in CUSTOMER_KEYED]
    for table, column in keyed:
        # A reference table whose key now holds its column (transactions after migration
        # 0040) is brought back to the coordinator, to be distributed below, rows kept.
        if methods.get(table) == "n" and await conn.fetchval(_KEY_HOLDS, table, column):
            await conn.execute("SELECT undistribute_table($1)", table)
            del methods[table]
    # Tables a later migration creates are not there yet when migrations are applied one at
    # a time (the stairway test): each is laid out by the run that creates it.
    existing = {r["t"] for r in await conn.fetch(
        "SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public'")}
    done = set(methods) | (set(DEVICE_KEYED + CUSTOMER_KEYED + REFERENCE) - existing)
    for table in DEVICE_KEYED:
        if table not in done:
            colocate = "none" if table == "devices" else "devices"
            await conn.execute("SELECT create_distributed_table($1, 'device_id', "
                               "colocate_with => $2)", table, colocate)
            laid.append(table)
    for table in CUSTOMER_KEYED:
        if table not in done and not await conn.fetchval(_KEY_HOLDS, table, "customer_id"):
            # Its key does not hold customer_id yet (transactions before migration 0040,
            # when a migration is applied step by step): a reference table until it does.
            await conn.execute("SELECT create_reference_table($1)", table)
            laid.append(table)
        elif table not in done:
            colocate = "none" if table == "customers" else "customers"
            await conn.execute("SELECT create_distributed_table($1, 'customer_id', "
                               "colocate_with => $2)", table, colocate)
            laid.append(table)
    for table in REFERENCE:
        if table not in done:
            await conn.execute("SELECT create_reference_table($1)", table)
            laid.append(table)
    if laid:
        log.info("tables laid out on Citus", extra={"tables": len(laid)})
    return laid
