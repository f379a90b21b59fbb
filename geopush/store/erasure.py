"""Erasure (SPEC section 10): personal data goes, aggregates stay without identifiers.

Pings, open visits, consent history, idempotency answers and the device itself are deleted;
events, decisions and deliveries keep their counts for the offer results but lose the device
and customer ids, message texts (they may hold a first name) and FCM message names. Their
device id is part of their key, so it becomes `ERASED_DEVICE` (the nil UUID, which no device
has) rather than NULL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import asyncpg

from geopush.store.preferences import ERASE_CUSTOMER as ERASE_CUSTOMER_PREFERENCES
from geopush.store.preferences import ERASE_DEVICE as ERASE_DEVICE_PREFERENCES

ERASED_DEVICE = UUID(int=0)


def _service_statements(column: str, extra: str = "", at: str = "$2") -> tuple[str, ...]:
    """SPEC section 14: the comment goes; answers, cases and store alerts lose who they were
    about; an alert not yet sent is never sent (it carries the comment and first name).
    `extra` is appended to each condition (the device statements bind a second argument);
    `at` is the parameter holding the time."""
    return (
        "UPDATE feedback_responses SET device_id = NULL, customer_id = NULL, comment = NULL"
        f" WHERE {column} = $1{extra}",
        "UPDATE service_cases SET device_id = NULL, customer_id = NULL"
        f" WHERE {column} = $1{extra}",
        "UPDATE store_alerts SET device_id = NULL, customer_id = NULL,"
        # Only its id, type and store stay (immutable functions only: Citus refuses a
        # stable one such as jsonb_build_object over the rows).
        " body = jsonb_set(jsonb_set(jsonb_set('{\"erased\": true}'::jsonb,"
        " '{id}', coalesce(body -> 'id', 'null')), '{type}', coalesce(body -> 'type', 'null')),"
        " '{store_id}', coalesce(body -> 'store_id', 'null')),"
        " reason = CASE WHEN status = 'queued' THEN 'erased' ELSE reason END,"
        # The time as a value: Citus refuses now() inside CASE.
        f" finished_at = CASE WHEN status = 'queued' THEN {at}::timestamptz"
        " ELSE finished_at END,"
        " status = CASE WHEN status = 'queued' THEN 'failed' ELSE status END"
        f" WHERE {column} = $1{extra}",
    )

# The device id is the distribution column on a Citus cluster, and a row's distribution
# column cannot change there: the anonymized rows are written anew under the nil device
# (jsonb_populate_record keeps every other column, whatever later migrations add), then the
# originals are deleted.
_ANONYMIZED_COPY = """
INSERT INTO {table}
SELECT r.* FROM {table} t,
     LATERAL jsonb_populate_record(t, jsonb_build_object('device_id', $2::uuid{more})) r
WHERE t.device_id = $1
"""
_MOVE_TO_NIL_DEVICE = (
    ("deliveries", ", 'customer_id', NULL, 'title', NULL, 'body', NULL,"
                   " 'fcm_message_name', NULL, 'last_error', NULL,"
                   " 'status', CASE WHEN t.status = 'queued' THEN 'cancelled' ELSE t.status END,"
                   " 'reason', CASE WHEN t.status = 'queued' THEN 'erased' ELSE t.reason END"),
    ("decisions", ", 'customer_id', NULL"),
    ("events", ""),
)
_ANONYMIZE_DEVICE = (
    *(_ANONYMIZED_COPY.format(table=table, more=more) for table, more in _MOVE_TO_NIL_DEVICE),
    *(f"DELETE FROM {table} WHERE device_id = $1 AND $2::uuid IS NOT NULL"
      for table, _ in _MOVE_TO_NIL_DEVICE),
    "DELETE FROM pings WHERE device_id = $1 AND $2::uuid IS NOT NULL",
    "DELETE FROM visits WHERE device_id = $1 AND $2::uuid IS NOT NULL",
    "DELETE FROM ping_batches WHERE device_id = $1 AND $2::uuid IS NOT NULL",
    "DELETE FROM consent_log WHERE device_id = $1 AND $2::uuid IS NOT NULL",
    "DELETE FROM devices WHERE device_id = $1 AND $2::uuid IS NOT NULL",
    *_service_statements("device_id", " AND $2::uuid IS NOT NULL", at="$3"),
    *ERASE_DEVICE_PREFERENCES,
)


async def erase_device(conn: asyncpg.Connection, device_id: UUID) -> None:
    """Erase one device; the caller holds a transaction."""
    await conn.execute("SELECT 1 FROM devices WHERE device_id = $1 FOR UPDATE", device_id)
    await erase_loyalty(conn, f"d:{device_id}", device_id=device_id)
    now = datetime.now(UTC)
    for statement in _ANONYMIZE_DEVICE:
        await conn.execute(statement, device_id, ERASED_DEVICE,
                           *((now,) if "$3" in statement else ()))


# Loyalty rows keep points, reason, store and time (the program's totals); the subject, the
# customer and device ids and the free-text note go. A device linked to a customer only
# loses its own id from the customer's rows: the points are the customer's.
_ERASE_LOYALTY = (
    "UPDATE loyalty_ledger SET subject = NULL, customer_id = NULL, device_id = NULL,"
    " note = NULL WHERE subject = $1",
    "UPDATE loyalty_badges SET subject = NULL, customer_id = NULL, device_id = NULL"
    " WHERE subject = $1",
    "UPDATE challenge_completions SET subject = NULL, customer_id = NULL, device_id = NULL"
    " WHERE subject = $1",
)
_FORGET_DEVICE = (
    "UPDATE loyalty_ledger SET device_id = NULL WHERE device_id = $1",
    "UPDATE loyalty_badges SET device_id = NULL WHERE device_id = $1",
    "UPDATE challenge_completions SET device_id = NULL WHERE device_id = $1",
)


async def erase_loyalty(conn: asyncpg.Connection, subject: str,
                        device_id: UUID | None = None) -> None:
    """Remove the identifiers from a subject's loyalty rows (and a device's id from all)."""
    for statement in _ERASE_LOYALTY:
        await conn.execute(statement, subject)
    if device_id is not None:
        for statement in _FORGET_DEVICE:
            await conn.execute(statement, device_id)


async def erase_customer(conn: asyncpg.Connection, customer_id: str) -> bool:
    """Erase a CRM customer: their profile, transactions' link to them, their devices' link.

    Transactions keep amount, category, store and time for the stores' totals, under no
    customer; queued deliveries to them are cancelled (`erased`). Their devices stay, as
    anonymous devices: a device's own data is erased by the app (`DELETE /v1/devices/me`).
    Returns False when geopush holds nothing under that id. A customer id known only from
    devices (linked at registration, never imported from the CRM) or only from
    transactions is still erased: the id is personal data wherever it is.
    """
    touched = 0
    now = datetime.now(UTC)
    for statement in _ERASE_CUSTOMER:
        status = await conn.execute(statement, customer_id,
                                    *((now,) if "$2" in statement else ()))
        touched += int(status.split()[-1])
    return touched > 0


_ERASE_CUSTOMER = (
    "DELETE FROM customers WHERE customer_id = $1",
    # Moved under no customer ('') rather than updated: customer_id is the key a Citus
    # cluster distributes them by, which no update may change. A line already kept under
    # no customer with the same (transaction_id, line) is one line: the copy is dropped.
    "WITH gone AS (DELETE FROM transactions WHERE customer_id = $1"
    " RETURNING transaction_id, line, store_external_id, store_id, ts, amount, category,"
    " product, imported_at)"
    " INSERT INTO transactions (customer_id, transaction_id, line, store_external_id,"
    " store_id, ts, amount, category, product, imported_at)"
    " SELECT '', transaction_id, line, store_external_id, store_id, ts, amount, category,"
    " product, imported_at FROM gone ON CONFLICT DO NOTHING",
    "DELETE FROM customer_recommendations WHERE customer_id = $1",
    "UPDATE decisions SET customer_id = NULL WHERE customer_id = $1",
    "UPDATE deliveries SET customer_id = NULL, title = NULL, body = NULL,"
    " fcm_message_name = NULL,"
    " reason = CASE WHEN status = 'queued' THEN 'erased' ELSE reason END,"
    " status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END"
    " WHERE customer_id = $1",
    "UPDATE devices SET customer_id = NULL WHERE customer_id = $1",
    # Loyalty: points, badges and completions stay for the totals, without the customer.
    "UPDATE loyalty_ledger SET subject = NULL, customer_id = NULL, device_id = NULL,"
    " note = NULL WHERE subject = 'c:' || $1",
    "UPDATE loyalty_badges SET subject = NULL, customer_id = NULL, device_id = NULL"
    " WHERE subject = 'c:' || $1",
    "UPDATE challenge_completions SET subject = NULL, customer_id = NULL, device_id = NULL"
    " WHERE subject = 'c:' || $1",
    *_service_statements("customer_id"),
    *ERASE_CUSTOMER_PREFERENCES,
)
